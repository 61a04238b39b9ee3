package webhookpub_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strconv"
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

// advanceUntil moves the fake clock forward by step until cond holds. Steps
// rather than one jump: the relay may register its next timer just after a
// jump, and would then wait for a time that never comes.
func (c *fakeClock) advanceUntil(t *testing.T, what string, step time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		c.Advance(step)
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
	// A long lease: the fake clock runs ahead while the relay works, and
	// these tests are not about takeover.
	r, err := outbox.NewRelay(e.store, pub, append([]outbox.Option{outbox.WithClock(e.clock), outbox.WithLease(24 * time.Hour)}, opts...)...)
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
	pub := newPublisher(t, ep.srv.URL, webhookpub.WithClock(env.clock.Now))
	env.enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{"invoice":1}`)})
	env.run(t, pub, outbox.WithBackoff(time.Second, 10*time.Second))

	for attempt := 1; attempt <= 2; attempt++ {
		eventually(t, "a failed attempt written back", func() bool {
			r := env.record(t, msgID)
			return r.Attempts == attempt && r.State == outbox.StatePending && r.LastError != ""
		})
		env.clock.advanceUntil(t, "the next attempt", time.Second, func() bool { return len(ep.seen()) > attempt })
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

	env.clock.advanceUntil(t, "delivery after the pause", 10*time.Second, func() bool {
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
	env.clock.advanceUntil(t, "delivery after Retry-After", time.Second, func() bool {
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
