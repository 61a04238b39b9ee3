package natspub_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/natspub"
	"github.com/steadfast-go/steadfast/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connect returns a JetStream context on TEST_NATS_URL and a stream of the
// test's own, bound to "<name>.>".
func connect(t testing.TB, cfg jetstream.StreamConfig) (jetstream.JetStream, string) {
	t.Helper()
	url := testenv.NATSURL(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := "T" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	cfg.Name = name
	if cfg.Subjects == nil {
		cfg.Subjects = []string{name + ".>"}
	}
	ctx := context.Background()
	for try := 1; ; try++ {
		_, err := js.CreateStream(ctx, cfg)
		if err == nil {
			break
		}
		// The server's own race: a stream created while the last other
		// one is deleted may find its parent directory gone (10049,
		// "error creating store for stream"; the log says "could not
		// create storage directory"). Parallel tests do both.
		var api *jetstream.APIError
		if try == 5 || !errors.As(err, &api) || api.ErrorCode != storeFailed {
			t.Fatalf("create stream: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return js, name
}

// storeFailed is JetStream's error code for a stream whose store could not
// be created.
const storeFailed jetstream.ErrorCode = 10049

func newPublisher(t testing.TB, js jetstream.JetStream, stream string, opts ...natspub.Option) *natspub.Publisher {
	t.Helper()
	p, err := natspub.New(context.Background(), js, stream, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func delivery(topic string) outbox.Delivery {
	id, _ := uuid.NewV7()
	return outbox.Delivery{Message: outbox.Message{ID: id.String(), Topic: topic, Payload: []byte(`{"n":1}`),
		Headers: map[string]string{"outbox-position": "42"}}, Attempt: 1}
}

func streamMsgs(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func TestPublishTwiceIsStoredOnce(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	p := newPublisher(t, js, stream)
	d := delivery(stream + ".orders")
	for i := 0; i < 3; i++ {
		d.Attempt = i + 1
		if err := p.Publish(context.Background(), d); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if n := streamMsgs(t, js, stream); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
	s, _ := js.Stream(context.Background(), stream)
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != d.ID {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, d.ID)
	}
	if got := m.Header.Get("outbox-position"); got != "42" {
		t.Errorf("outbox-position = %q, want 42", got)
	}
	if !bytes.Equal(m.Data, d.Payload) {
		t.Errorf("data = %q, want %q", m.Data, d.Payload)
	}
}

func TestPublishSubjects(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{Subjects: nil})
	// Bind the stream to a pattern with both wildcards.
	s, _ := js.Stream(context.Background(), stream)
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{stream + ".a.*.c", stream + ".b.>", stream + ".exact"}
	if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, js, stream)
	tests := []struct {
		topic string
		bound bool
	}{
		{stream + ".a.x.c", true},
		{stream + ".a.x.d", false},
		{stream + ".a.x.c.d", false},
		{stream + ".a.c", false},
		{stream + ".b.x", true},
		{stream + ".b.x.y.z", true},
		{stream + ".b", false},
		{stream + ".exact", true},
		{stream + ".exactly", false},
		{"elsewhere", false},
		{"", false},
		{stream + "..exact", false},
	}
	for _, tt := range tests {
		err := p.Publish(context.Background(), delivery(tt.topic))
		if tt.bound && err != nil {
			t.Errorf("Publish(%q) = %v, want nil", tt.topic, err)
		}
		if !tt.bound && (!errors.Is(err, natspub.ErrSubjectNotInStream) || !retry.IsPermanent(err)) {
			t.Errorf("Publish(%q) = %v, want permanent ErrSubjectNotInStream", tt.topic, err)
		}
	}
}

func TestPublishHonoursContext(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	p := newPublisher(t, js, stream)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := p.Publish(ctx, delivery(stream+".x"))
	if err == nil || retry.IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish(cancelled) = %v, want a retryable context.Canceled", err)
	}
}

func TestNewChecksTheStream(t *testing.T) {
	t.Parallel()
	jsDefault, defaultStream := connect(t, jetstream.StreamConfig{})
	jsShort, shortStream := connect(t, jetstream.StreamConfig{Duplicates: 30 * time.Second})

	// The server's default window (2 min) outlasts the relay's default (1 min);
	// New sees it as exactly 2 min.
	newPublisher(t, jsDefault, defaultStream)
	newPublisher(t, jsDefault, defaultStream, natspub.WithMaxRedeliveryDelay(2*time.Minute))
	if _, err := natspub.New(context.Background(), jsDefault, defaultStream, natspub.WithMaxRedeliveryDelay(2*time.Minute+time.Second)); !errors.Is(err, natspub.ErrDuplicateWindowTooShort) {
		t.Errorf("New with a delay just over the server default window 2m = %v, want ErrDuplicateWindowTooShort", err)
	}
	tests := []struct {
		name   string
		js     jetstream.JetStream
		stream string
		opts   []natspub.Option
		want   error
		text   string
	}{
		{"unknown stream", jsDefault, "NO_SUCH_STREAM_" + defaultStream, nil, jetstream.ErrStreamNotFound, ""},
		{"window shorter than the relay's default", jsShort, shortStream, nil, natspub.ErrDuplicateWindowTooShort, ""},
		{"window shorter than the relay's delay", jsDefault, defaultStream, []natspub.Option{natspub.WithMaxRedeliveryDelay(5 * time.Minute)}, natspub.ErrDuplicateWindowTooShort, ""},
		{"nil JetStream", nil, defaultStream, nil, nil, "JetStream"},
		{"no stream name", jsDefault, "", nil, nil, "stream name"},
		{"bad delay", jsDefault, defaultStream, []natspub.Option{natspub.WithMaxRedeliveryDelay(0)}, nil, "WithMaxRedeliveryDelay"},
		{"nil logger", jsDefault, defaultStream, []natspub.Option{natspub.WithLogger(nil)}, nil, "WithLogger"},
		{"nil option", jsDefault, defaultStream, []natspub.Option{nil}, nil, "natspub: New: option 0 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := natspub.New(context.Background(), tt.js, tt.stream, tt.opts...)
			if err == nil {
				t.Fatal("New = nil error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, want %v", err, tt.want)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("New = %v, want an error naming %q", err, tt.text)
			}
		})
	}
	// The error names the stream, both durations, and where the delay came
	// from.
	_, err := natspub.New(context.Background(), jsShort, shortStream)
	for _, want := range []string{shortStream, "30s", "1m0s", "WithMaxRedeliveryDelay's default"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want an error naming %s (a window of 30s < 1m)", err, want)
		}
	}

	// Accepting the risk is loud.
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := natspub.New(context.Background(), jsShort, shortStream, natspub.WithShortDuplicateWindow(), natspub.WithLogger(logger)); err != nil {
		t.Fatalf("New with WithShortDuplicateWindow = %v", err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), shortStream) {
		t.Errorf("log = %q, want an error line naming the stream", logs.String())
	}
}

var _ outbox.Inbox = (*sqlstore.Store)(nil)

func TestConsumeRunsOncePerMessage(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	p := newPublisher(t, js, stream)
	inbox := pubtest.NewInbox(t)
	ctx := context.Background()
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	d := delivery(stream + ".orders")
	if err := p.Publish(ctx, d); err != nil {
		t.Fatal(err)
	}
	next := func() jetstream.Msg {
		t.Helper()
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		return msg
	}
	var runs atomic.Int32
	handler := func(fail bool) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			runs.Add(1)
			if fail {
				return errors.New("handler failed")
			}
			return nil
		}
	}

	// A failing handler: nothing is recorded, the message comes back.
	if _, err := natspub.Consume(ctx, inbox, "billing", next(), handler(true)); err == nil {
		t.Fatal("Consume with a failing handler = nil")
	}
	// The redelivery runs the handler again and succeeds.
	msg := next()
	if md, _ := msg.Metadata(); md.NumDelivered != 2 {
		t.Errorf("NumDelivered = %d, want 2 (the nak redelivered it)", md.NumDelivered)
	}
	if pos, ok := natspub.Position(msg); !ok || pos != 42 {
		t.Errorf("Position = %d, %v; want 42", pos, ok)
	}
	if dup, err := natspub.Consume(ctx, inbox, "billing", msg, handler(false)); err != nil || dup {
		t.Fatalf("Consume = %v, %v; want first processing", dup, err)
	}
	// A message whose processing committed but whose ack was lost (the
	// consumer crashed in between) comes back: the inbox recognises it.
	d2 := delivery(stream + ".orders")
	if err := p.Publish(ctx, d2); err != nil {
		t.Fatal(err)
	}
	if dup, err := inbox.Process(ctx, "billing", d2.ID, handler(false)); err != nil || dup {
		t.Fatalf("Process = %v, %v", dup, err)
	}
	if dup, err := natspub.Consume(ctx, inbox, "billing", next(), handler(false)); err != nil || !dup {
		t.Fatalf("Consume of the redelivery = %v, %v; want duplicate", dup, err)
	}
	if n := runs.Load(); n != 3 {
		t.Errorf("handler ran %d times, want 3 (a failure, a success, the first processing of d2)", n)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 {
		t.Errorf("NumAckPending = %d, want 0", info.NumAckPending)
	}
	// Another consumer processes the same message on its own.
	if dup, err := inbox.Process(ctx, "audit", d.ID, handler(false)); err != nil || dup {
		t.Errorf("Process for another consumer = %v, %v; want first processing", dup, err)
	}
}

func TestConsumeWithoutMessageID(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	ctx := context.Background()
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, stream+".raw", []byte("x")); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	_, err = natspub.Consume(ctx, pubtest.NewInbox(t), "billing", msg, func(context.Context, *sql.Tx) error { ran = true; return nil })
	if !errors.Is(err, natspub.ErrNoMessageID) || ran {
		t.Fatalf("Consume = %v (ran %v), want ErrNoMessageID without running", err, ran)
	}
}

func TestConsumeRefusesNil(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	p := newPublisher(t, js, stream)
	ctx := context.Background()
	cons, err := js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, delivery(stream+".orders")); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natspub.Consume(ctx, nil, "billing", msg, func(context.Context, *sql.Tx) error { return nil }); err == nil {
		t.Error("Consume with a nil inbox = nil error")
	}
	if _, err := natspub.Consume(ctx, pubtest.NewInbox(t), "billing", msg, nil); err == nil {
		t.Error("Consume with a nil fn = nil error")
	}
}

// TestMalformedMessageIsPermanent: a message the client or the stream
// refuses as malformed (a header name NATS cannot carry, a payload larger
// than the stream accepts) is the message's own fault: permanent, so the
// relay dead-letters it at once instead of retrying it forever, and a
// well-formed message after it goes through.
func TestMalformedMessageIsPermanent(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{MaxMsgSize: 512})
	p := newPublisher(t, js, stream)
	badHeader := delivery(stream + ".orders")
	badHeader.Headers = map[string]string{"bad key": "v"}
	tooLarge := delivery(stream + ".orders")
	tooLarge.Payload = bytes.Repeat([]byte("x"), 1024)
	for name, d := range map[string]outbox.Delivery{"header name with a space": badHeader, "payload over the stream's MaxMsgSize": tooLarge} {
		err := p.Publish(context.Background(), d)
		if err == nil || !retry.IsPermanent(err) {
			t.Errorf("%s: Publish = %v, want a permanent error", name, err)
		}
	}
	if err := p.Publish(context.Background(), delivery(stream+".orders")); err != nil {
		t.Fatalf("a well-formed message after them: %v", err)
	}
}
