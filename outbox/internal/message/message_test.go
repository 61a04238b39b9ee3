package message

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/steadfast-go/steadfast/outbox"
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
		{"blank destination", outbox.Message{Topic: "t", Destination: " "}, "empty destination"},
		{"long destination", outbox.Message{Topic: "t", Destination: strings.Repeat("d", 256)}, "destination longer"},
		{"payload over", outbox.Message{Topic: "t", Payload: make([]byte, 11)}, "over the limit"},
		{"payload at limit", outbox.Message{Topic: "t", Payload: make([]byte, 10)}, ""},
		{"bad id", outbox.Message{ID: "x", Topic: "t"}, "not a UUID"},
		{"empty header name", outbox.Message{Topic: "t", Headers: map[string]string{"": "v"}}, "header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := []outbox.Message{c.msg}
			out, _, err := Prepare(in, 10)
			if c.reason != "" {
				var ie *outbox.InvalidMessageError
				if !errors.As(err, &ie) || !errors.Is(err, outbox.ErrInvalid) || !strings.Contains(ie.Reason, c.reason) {
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
			if c.msg.Destination == "" && out[0].Destination != c.msg.Topic {
				t.Errorf("destination %q, want the topic %q", out[0].Destination, c.msg.Topic)
			}
			if in[0].ID != c.msg.ID {
				t.Error("Prepare modified the caller's message")
			}
		})
	}
}

func TestTraceParent(t *testing.T) {
	t.Parallel()
	if tp := TraceParent(context.Background()); tp != "" {
		t.Errorf("traceParent without a span = %q", tp)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	tp := TraceParent(trace.ContextWithSpanContext(context.Background(), sc))
	if want := "00-01000000000000000000000000000000-0200000000000000-01"; tp != want {
		t.Errorf("traceParent = %q, want %q", tp, want)
	}
}

// FuzzPrepare: whatever the input, Prepare either refuses it with an
// InvalidMessageError or returns messages that Check accepts, never panics.
func FuzzPrepare(f *testing.F) {
	f.Add("", "t", "", "k", "h", "v", []byte("p"))
	f.Add("0190d8a2-0000-7000-8000-000000000001", "", "d", "", "", "", []byte(nil))
	f.Add("{0190d8a2-0000-7000-8000-000000000001}", "t", "", "", "X-A b", "x\r\ny", make([]byte, 65))
	f.Fuzz(func(t *testing.T, id, topic, dest, key, hk, hv string, payload []byte) {
		m := outbox.Message{ID: id, Topic: topic, Destination: dest, Key: key, Headers: map[string]string{hk: hv}, Payload: payload}
		out, hs, err := Prepare([]outbox.Message{m}, 64)
		if err != nil {
			if !errors.Is(err, outbox.ErrInvalid) {
				t.Fatalf("error %v is not an InvalidMessageError", err)
			}
			return
		}
		if _, err := uuid.Parse(out[0].ID); err != nil {
			t.Fatalf("accepted id %q: %v", out[0].ID, err)
		}
		if reason := Check(out[0]); reason != "" || len(out[0].Payload) > 64 || hs[0] == "" {
			t.Fatalf("accepted %+v (%s)", out[0], reason)
		}
	})
}

func TestHeaderRules(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, value string
		ok          bool
	}{
		{"Content-Type", "application/json", true},
		{"x-a", "", true},
		{"X-A", "a b\tc", true},
		{"X-A", "café", true},
		{"!#$%&'*+-.^_`|~09azAZ", "v", true},
		{"", "v", false},
		{"X A", "v", false},
		{"X-A:", "v", false},
		{"X(A)", "v", false},
		{"X-Ü", "v", false},
		{"X-A", "a\r\nb", false},
		{"X-A", "a\nb", false},
		{"X-A", "a\x00", false},
		{"X-A", "a\x7f", false},
		{"X-A", " a", false},
		{"X-A", "a ", false},
		{"X-A", "\t", false},
		{"X-A", "caf\xe9", false},
	} {
		got := checkHeaders(map[string]string{c.name: c.value})
		if (got == "") != c.ok {
			t.Errorf("checkHeaders(%q: %q) = %q, want ok %v", c.name, c.value, got, c.ok)
		}
	}
	many := map[string]string{}
	for i := range maxHeaders + 1 {
		many["X-"+strconv.Itoa(i)] = "v"
	}
	if checkHeaders(many) == "" {
		t.Errorf("%d headers accepted", len(many))
	}
	if checkHeaders(map[string]string{"X-Big": strings.Repeat("v", maxHeaderBytes)}) == "" {
		t.Error("headers over the byte bound accepted")
	}
}
