package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/steadfast-go/steadfast/outbox"
	"go.opentelemetry.io/otel/trace"
)

func TestPrepare(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		msg    outbox.Message
		reason string // empty: accepted
	}{
		{"minimal", outbox.Message{Topic: "t"}, ""},
		{"own uuid", outbox.Message{ID: "0190d8a2-0000-7000-8000-000000000001", Topic: "t"}, ""},
		{"empty topic", outbox.Message{}, "empty topic"},
		{"blank topic", outbox.Message{Topic: " \t"}, "empty topic"},
		{"payload over", outbox.Message{Topic: "t", Payload: make([]byte, 11)}, "over the limit"},
		{"payload at limit", outbox.Message{Topic: "t", Payload: make([]byte, 10)}, ""},
		{"bad id", outbox.Message{ID: "x", Topic: "t"}, "not a UUID"},
		{"empty header name", outbox.Message{Topic: "t", Headers: map[string]string{"": "v"}}, "empty header name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []outbox.Message{c.msg}
			out, _, err := outbox.Prepare(context.Background(), in, 10)
			if c.reason != "" {
				var ie *outbox.InvalidMessageError
				if !errors.As(err, &ie) || !errors.Is(err, outbox.ErrInvalidMessage) || !strings.Contains(ie.Reason, c.reason) {
					t.Fatalf("Prepare = %v, want an InvalidMessageError with %q", err, c.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, err := uuid.Parse(out[0].ID)
			if err != nil {
				t.Fatalf("id %q: %v", out[0].ID, err)
			}
			if c.msg.ID == "" && id.Version() != 7 {
				t.Errorf("assigned id %s is version %d, want 7", id, id.Version())
			}
			if in[0].ID != c.msg.ID {
				t.Error("Prepare modified the caller's message")
			}
		})
	}
}

func TestTraceParent(t *testing.T) {
	t.Parallel()
	if tp := outbox.TraceParent(context.Background()); tp != "" {
		t.Errorf("TraceParent without a span = %q", tp)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	tp := outbox.TraceParent(trace.ContextWithSpanContext(context.Background(), sc))
	if want := "00-01000000000000000000000000000000-0200000000000000-01"; tp != want {
		t.Errorf("TraceParent = %q, want %q", tp, want)
	}
}

// FuzzPrepare: whatever the input, Prepare either refuses it with an
// InvalidMessageError or returns messages with UUID ids, never panics.
func FuzzPrepare(f *testing.F) {
	f.Add("", "t", "k", "h", "v", []byte("p"))
	f.Add("0190d8a2-0000-7000-8000-000000000001", "", "", "", "", []byte(nil))
	f.Add("{0190d8a2-0000-7000-8000-000000000001}", "t", "", "", "", make([]byte, 65))
	f.Fuzz(func(t *testing.T, id, topic, key, hk, hv string, payload []byte) {
		m := outbox.Message{ID: id, Topic: topic, Key: key, Headers: map[string]string{hk: hv}, Payload: payload}
		out, _, err := outbox.Prepare(context.Background(), []outbox.Message{m}, 64)
		if err != nil {
			if !errors.Is(err, outbox.ErrInvalidMessage) {
				t.Fatalf("error %v is not an InvalidMessageError", err)
			}
			return
		}
		if _, err := uuid.Parse(out[0].ID); err != nil {
			t.Fatalf("accepted id %q: %v", out[0].ID, err)
		}
		if strings.TrimSpace(out[0].Topic) == "" || len(out[0].Payload) > 64 {
			t.Fatalf("accepted %+v", out[0])
		}
	})
}
