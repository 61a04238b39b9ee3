package natspub_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/natspub"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// fakeClock drives the relays' timers and the SQLite outbox's clock.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

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

// until waits in real time for cond, moving the fake clock by step each
// round (step 0: not at all). The bound only stops a broken test from
// hanging.
func (c *fakeClock) until(t *testing.T, what string, step time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if step > 0 {
			c.Advance(step)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countingPublisher counts the publishes that returned nil.
type countingPublisher struct {
	outbox.Publisher
	ok atomic.Int32
}

func (p *countingPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	err := p.Publisher.Publish(ctx, d)
	if err == nil {
		p.ok.Add(1)
	}
	return err
}

// killedStore is the store as seen by a relay process that dies right after
// publishing: its write-backs never reach the database.
type killedStore struct {
	outbox.Store
	settles atomic.Int32
}

func (s *killedStore) Settle(_ context.Context, outcomes []outbox.Outcome) error {
	s.settles.Add(1)
	// Reported as rejected so that the doomed relay drops them at once.
	return &outbox.LeaseLostError{Rejected: len(outcomes)}
}

func startRelay(t *testing.T, store outbox.Store, pub outbox.Publisher, opts ...outbox.Option) (stop func()) {
	t.Helper()
	r, err := outbox.NewRelay(store, pub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestRelayKilledAfterPublishStreamHoldsOnce(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	db, err := sql.Open("sqlite", sqloutbox.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := sqloutbox.New(db, sqloutbox.SQLite, sqloutbox.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const id = "0190f5e2-7b4c-7000-8000-00000000b001"
	tx, _ := db.Begin()
	if err := store.Enqueue(ctx, tx, outbox.Message{ID: id, Topic: stream + ".orders", Payload: []byte(`{"order":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	const lease = time.Minute
	opts := []outbox.Option{outbox.WithClock(clock), outbox.WithLease(lease)}
	pub := &countingPublisher{Publisher: newPublisher(t, js, stream, natspub.WithMaxRedeliveryDelay(lease))}

	// The first relay publishes, then dies before its write-back.
	killed := &killedStore{Store: store}
	stop := startRelay(t, killed, pub, opts...)
	clock.until(t, "the first publish and its lost write-back", 0, func() bool { return killed.settles.Load() > 0 })
	stop()
	if pub.ok.Load() != 1 || streamMsgs(t, js, stream) != 1 {
		t.Fatalf("after the first relay: %d publishes, %d messages in the stream", pub.ok.Load(), streamMsgs(t, js, stream))
	}
	if r, _ := store.Get(ctx, id); r.State != outbox.StatePending {
		t.Fatalf("message is %v after the relay died, want still pending", r.State)
	}

	// Another relay takes the message over once the lease expired and
	// publishes it again, with the same Nats-Msg-Id.
	startRelay(t, store, pub, opts...)
	clock.until(t, "delivery by the second relay", 5*time.Second, func() bool {
		r, err := store.Get(ctx, id)
		return err == nil && r.State == outbox.StateDelivered
	})
	if n := pub.ok.Load(); n != 2 {
		t.Fatalf("message published %d times, want 2 (once per relay)", n)
	}
	if n := streamMsgs(t, js, stream); n != 1 {
		t.Fatalf("stream holds %d messages, want 1: JetStream must drop the redelivery", n)
	}
}
