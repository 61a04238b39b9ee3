package webhookpub_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/webhook"
)

// fakeClock drives the relay's timers and the SQLite outbox's clock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now
	}
	c.timers = kept
}

// eventually waits, in real time, for cond: the relay works in goroutines of
// its own. The bound only stops a broken test from hanging.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type relayEnv struct {
	clock *fakeClock
	store *sqloutbox.Store
	db    *sql.DB
}

func newRelayEnv(t *testing.T) *relayEnv {
	t.Helper()
	clock := newFakeClock()
	db, err := sql.Open("sqlite", sqloutbox.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := sqloutbox.New(db, sqloutbox.SQLite, sqloutbox.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &relayEnv{clock: clock, store: store, db: db}
}

func (e *relayEnv) enqueue(t *testing.T, msgs ...outbox.Message) {
	t.Helper()
	tx, err := e.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Enqueue(context.Background(), tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (e *relayEnv) run(t *testing.T, pub outbox.Publisher, opts ...outbox.Option) {
	t.Helper()
	r, err := outbox.NewRelay(e.store, pub, append([]outbox.Option{outbox.WithClock(e.clock)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
	})
}

func (e *relayEnv) record(t *testing.T, id string) outbox.Record {
	t.Helper()
	rec, err := e.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

const msgID = "0190f5e2-7b4c-7000-8000-00000000a001"

func TestRelayRetriesWithTheSameWebhookID(t *testing.T) {
	t.Parallel()
	env := newRelayEnv(t)
	ep := newEndpoint(t, status(503), status(503), status(200))
	pub := newPublisher(t, ep.srv.URL, webhookpub.WithClock(env.clock.Now))
	env.enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{"invoice":1}`)})
	env.run(t, pub, outbox.WithBackoff(time.Second, 10*time.Second))

	for attempt := 1; attempt <= 2; attempt++ {
		eventually(t, "a failed attempt written back", func() bool {
			r := env.record(t, msgID)
			return r.Attempts == attempt && r.State == outbox.StatePending && r.LastError != ""
		})
		env.clock.Advance(time.Minute) // past any backoff
	}
	eventually(t, "delivery", func() bool { return env.record(t, msgID).State == outbox.StateDelivered })

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
	}, webhookpub.WithClock(env.clock.Now), webhookpub.WithGonePause(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	const otherID = "0190f5e2-7b4c-7000-8000-00000000a002"
	env.enqueue(t,
		outbox.Message{ID: msgID, Topic: "gone", Payload: []byte(`{}`)},
		outbox.Message{ID: otherID, Topic: "other", Payload: []byte(`{}`)},
	)
	// One attempt only: had the 410 spent it, the message would be dead.
	env.run(t, pub, outbox.WithMaxAttempts(1))

	pausedAt := env.clock.Now()
	eventually(t, "the 410 written back", func() bool {
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
	eventually(t, "the other endpoint's delivery", func() bool { return env.record(t, otherID).State == outbox.StateDelivered })

	env.clock.Advance(10*time.Minute + time.Second)
	eventually(t, "delivery after the pause", func() bool { return env.record(t, msgID).State == outbox.StateDelivered })
	if n := len(gone.seen()); n != 2 {
		t.Errorf("paused endpoint saw %d requests, want 2 (none during the pause)", n)
	}
}

func TestRelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	env := newRelayEnv(t)
	ep := newEndpoint(t, status(503, "Retry-After", "120"), status(200))
	pub := newPublisher(t, ep.srv.URL, webhookpub.WithClock(env.clock.Now))
	env.enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{}`)})
	// The relay's own backoff is one second at most: a later retry is the
	// endpoint's Retry-After at work.
	env.run(t, pub, outbox.WithBackoff(time.Second, time.Second))

	at := env.clock.Now()
	eventually(t, "the 503 written back", func() bool {
		r := env.record(t, msgID)
		return r.Attempts == 1 && r.State == outbox.StatePending && r.LastError != ""
	})
	if got := env.record(t, msgID).AvailableAt.Sub(at); got != 120*time.Second {
		t.Fatalf("next attempt scheduled %v after the 503, want the 120s of Retry-After", got)
	}
	env.clock.Advance(119 * time.Second)
	// Still scheduled for later; then due.
	if r := env.record(t, msgID); r.State != outbox.StatePending || len(ep.seen()) != 1 {
		t.Fatalf("before Retry-After elapsed: state %v, %d requests", r.State, len(ep.seen()))
	}
	env.clock.Advance(2 * time.Second)
	eventually(t, "delivery after Retry-After", func() bool { return env.record(t, msgID).State == outbox.StateDelivered })
	if n := len(ep.seen()); n != 2 {
		t.Errorf("endpoint saw %d requests, want 2", n)
	}
}

