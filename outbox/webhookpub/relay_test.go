package webhookpub_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/webhook"
)

// relayEnv is a SQLite outbox on a fake clock, shared by the store and the
// relay.
type relayEnv struct {
	*pubtest.Outbox
	clock *outboxtest.Clock
}

func newRelayEnv(t *testing.T) *relayEnv {
	t.Helper()
	clock := outboxtest.NewClock(time.Unix(1_700_000_000, 0))
	return &relayEnv{Outbox: pubtest.NewOutbox(t, clock.Now), clock: clock}
}

func (e *relayEnv) run(t *testing.T, pub outbox.Publisher, opts ...outbox.Option) {
	t.Helper()
	// A long lease: the fake clock runs ahead while the relay works, and
	// these tests are not about takeover.
	pubtest.StartRelay(t, e.Store, pub, append([]outbox.Option{outbox.WithClock(e.clock), outbox.WithLease(24 * time.Hour)}, opts...)...)
}

func (e *relayEnv) record(t *testing.T, id string) outbox.Record { return e.Record(t, id) }

func (e *relayEnv) enqueue(t *testing.T, msgs ...outbox.Message) { e.Enqueue(t, msgs...) }

// stampGap is the time between the webhook-timestamps of two requests.
func stampGap(t *testing.T, a, b request) time.Duration {
	t.Helper()
	ta, err1 := strconv.ParseInt(a.header.Get("webhook-timestamp"), 10, 64)
	tb, err2 := strconv.ParseInt(b.header.Get("webhook-timestamp"), 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad timestamps: %v %v", err1, err2)
	}
	return time.Duration(tb-ta) * time.Second
}

const msgID = "0190f5e2-7b4c-7000-8000-00000000a001"

func TestRelayRetriesWithTheSameWebhookID(t *testing.T) {
	t.Parallel()
	env := newRelayEnv(t)
	ep := newEndpoint(t, status(503), status(503), status(200))
	pub := clocked(newPublisher(t, ep.srv.URL), env.clock.Now)
	env.enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{"invoice":1}`)})
	env.run(t, pub, outbox.WithBackoff(time.Second, 10*time.Second))

	for attempt := 1; attempt <= 2; attempt++ {
		pubtest.Until(t, "a failed attempt written back", nil, 0, func() bool {
			r := env.record(t, msgID)
			return r.Attempts == attempt && r.State == outbox.StatePending && r.LastError != ""
		})
		pubtest.Until(t, "the next attempt", env.clock, time.Second, func() bool { return len(ep.seen()) > attempt })
	}
	pubtest.Until(t, "delivery", nil, 0, func() bool { return env.record(t, msgID).State == outbox.StateDelivered })

	seen := ep.seen()
	if len(seen) != 3 {
		t.Fatalf("endpoint saw %d attempts, want 3", len(seen))
	}
	v, err := webhook.NewVerifier([]string{secret}, webhook.WithClock(env.clock.Now), webhook.WithTolerance(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stamps := map[string]bool{}
	for i, r := range seen {
		if got := r.header.Get("webhook-id"); got != msgID {
			t.Errorf("attempt %d: webhook-id %q, want %q", i+1, got, msgID)
		}
		if err := v.Verify(r.header, r.body); err != nil {
			t.Errorf("attempt %d: signature: %v", i+1, err)
		}
		stamps[r.header.Get("webhook-timestamp")] = true
	}
	if len(stamps) != 3 {
		t.Errorf("timestamps %v: each attempt must be signed afresh", stamps)
	}
}

func TestRelay410PausesWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	env := newRelayEnv(t)
	gone := newEndpoint(t, status(410), status(200))
	other := newEndpoint(t, status(200))
	pub, err := webhookpub.New(map[string]webhookpub.Endpoint{
		"gone":  {URL: gone.srv.URL, Secrets: []string{secret}},
		"other": {URL: other.srv.URL, Secrets: []string{secret}},
	}, loopback, webhookpub.WithGonePause(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	webhookpub.SetClock(pub, env.clock.Now)
	const otherID = "0190f5e2-7b4c-7000-8000-00000000a002"
	env.enqueue(t,
		outbox.Message{ID: msgID, Topic: "gone", Payload: []byte(`{}`)},
		outbox.Message{ID: otherID, Topic: "other", Payload: []byte(`{}`)},
	)
	// One attempt only: had the 410 spent it, the message would be dead.
	env.run(t, pub, outbox.WithMaxAttempts(1))

	pausedAt := env.clock.Now()
	pubtest.Until(t, "the 410 written back", nil, 0, func() bool {
		r := env.record(t, msgID)
		return r.State == outbox.StatePending && r.LastError != ""
	})
	r := env.record(t, msgID)
	if r.Attempts != 0 {
		t.Errorf("after a 410: attempts = %d, want 0 (a pause spends none)", r.Attempts)
	}
	if want := pausedAt.Add(10 * time.Minute); r.AvailableAt.Before(want) {
		t.Errorf("after a 410: available at %v, want not before %v (the pause)", r.AvailableAt, want)
	}
	// The other destination is not held up.
	pubtest.Until(t, "the other endpoint's delivery", nil, 0, func() bool { return env.record(t, otherID).State == outbox.StateDelivered })

	pubtest.Until(t, "delivery after the pause", env.clock, 10*time.Second, func() bool {
		return env.record(t, msgID).State == outbox.StateDelivered
	})
	seen := gone.seen()
	if len(seen) != 2 {
		t.Fatalf("paused endpoint saw %d requests, want 2", len(seen))
	}
	if gap := stampGap(t, seen[0], seen[1]); gap < 10*time.Minute {
		t.Errorf("second request came %v after the 410, before the 10m pause ended", gap)
	}
}

func TestRelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	env := newRelayEnv(t)
	ep := newEndpoint(t, status(503, "Retry-After", "120"), status(200))
	pub := clocked(newPublisher(t, ep.srv.URL), env.clock.Now)
	env.enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{}`)})
	// The relay's own backoff is one second at most: a later retry is the
	// endpoint's Retry-After at work.
	env.run(t, pub, outbox.WithBackoff(time.Second, time.Second))

	at := env.clock.Now()
	pubtest.Until(t, "the 503 written back", nil, 0, func() bool {
		r := env.record(t, msgID)
		return r.Attempts == 1 && r.State == outbox.StatePending && r.LastError != ""
	})
	if got := env.record(t, msgID).AvailableAt.Sub(at); got != 120*time.Second {
		t.Fatalf("next attempt scheduled %v after the 503, want the 120s of Retry-After", got)
	}
	pubtest.Until(t, "delivery after Retry-After", env.clock, time.Second, func() bool {
		return env.record(t, msgID).State == outbox.StateDelivered
	})
	seen := ep.seen()
	if len(seen) != 2 {
		t.Fatalf("endpoint saw %d requests, want 2", len(seen))
	}
	// Both attempts were signed with the relay's (fake) time.
	if gap := stampGap(t, seen[0], seen[1]); gap < 120*time.Second {
		t.Errorf("retry came %v after the 503, before its Retry-After of 120s", gap)
	}
}
