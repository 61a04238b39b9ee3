package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
	"github.com/steadfast-go/steadfast/retry"
)

// The relay's own timing, on the fake clock of testing/synctest with the
// in-memory store (whose leases and schedules follow the same clock).

var quiet = outbox.WithLogger(slog.New(slog.DiscardHandler))

func memEnqueue(t *testing.T, s *memstore.Store, msgs ...outbox.Message) {
	t.Helper()
	tx, err := s.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Enqueue(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// timedPublisher records when each publish began and answers with fail's
// result (nil fail: success).
type timedPublisher struct {
	mu   sync.Mutex
	at   []time.Time
	ds   []outbox.Delivery
	fail func(n int, d outbox.Delivery) error
}

func (p *timedPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	p.mu.Lock()
	p.at = append(p.at, time.Now())
	p.ds = append(p.ds, d)
	n := len(p.at)
	p.mu.Unlock()
	if p.fail != nil {
		return p.fail(n, d)
	}
	return nil
}

func (p *timedPublisher) times() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.at...)
}

func startMem(t *testing.T, s outbox.Store, pub outbox.Publisher, opts ...outbox.Option) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(s, pub, append([]outbox.Option{quiet}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPollOnlyTiming: without a notifier, a message committed while the
// relay waits is published at the relay's next poll, not before.
func TestPollOnlyTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 10 * time.Second
		s := memstore.New()
		pub := &timedPublisher{}
		r := startMem(t, s, pub, outbox.WithPollInterval(poll))
		synctest.Wait() // both claimers found nothing and wait for the next poll
		start := time.Now()
		time.Sleep(poll / 2)
		memEnqueue(t, s, outbox.Message{Topic: "t", Payload: []byte("x")})
		time.Sleep(poll/2 - time.Millisecond)
		synctest.Wait()
		if n := len(pub.times()); n != 0 {
			t.Fatalf("published %d before the next poll", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if at := pub.times(); len(at) != 1 || at[0].Sub(start) != poll {
			t.Fatalf("published at %v, want once at the next poll (%v)", at, poll)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWakeSkipsThePoll: Wake makes the relay claim at once.
func TestWakeSkipsThePoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memstore.New()
		pub := &timedPublisher{}
		r := startMem(t, s, pub, outbox.WithPollInterval(time.Hour))
		synctest.Wait()
		start := time.Now()
		memEnqueue(t, s, outbox.Message{Topic: "t"})
		r.Wake()
		synctest.Wait()
		if at := pub.times(); len(at) != 1 || !at[0].Equal(start) {
			t.Fatalf("published at %v, want at once", at)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRetrySchedule: a failed publish is retried after its backoff (full
// jitter up to base·2^(n-1)) or after the delay its error asks for, found by
// the next poll after it.
func TestRetrySchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 100 * time.Millisecond
		s := memstore.New()
		pub := &timedPublisher{fail: func(n int, d outbox.Delivery) error {
			switch n {
			case 1, 2:
				return errors.New("503")
			case 3:
				return retry.After(errors.New("429"), 7*time.Second)
			}
			return nil
		}}
		memEnqueue(t, s, outbox.Message{Topic: "t"})
		r := startMem(t, s, pub, outbox.WithPollInterval(poll), outbox.WithBackoff(time.Second, 10*time.Second))
		for len(pub.times()) < 4 {
			time.Sleep(poll)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		at := pub.times()
		for i, ceiling := range []time.Duration{time.Second, 2 * time.Second} {
			if gap := at[i+1].Sub(at[i]); gap > ceiling+poll {
				t.Errorf("retry %d after %v, want within the backoff's %v and a poll", i+1, gap, ceiling)
			}
		}
		if gap := at[3].Sub(at[2]); gap < 7*time.Second || gap > 7*time.Second+poll {
			t.Errorf("retry after a Retry-After of 7s came %v later", gap)
		}
	})
}

// hangingSettle is a store whose write-backs hang until their context
// ends.
type hangingSettle struct {
	outbox.Store
	settles atomic.Int32
}

func (h *hangingSettle) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	h.settles.Add(1)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStopGrace: when Stop's context has ended, the final write-back still
// gets its grace of 10 s, then Stop returns.
func TestStopGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		memEnqueue(t, mem, outbox.Message{Topic: "t"})
		s := &hangingSettle{Store: mem}
		pub := &timedPublisher{}
		r := startMem(t, s, pub)
		synctest.Wait()
		if len(pub.times()) != 1 || s.settles.Load() == 0 {
			t.Fatal("the message was not published and written back")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		_ = r.Stop(ctx) // nil: no publish had to be cut
		if took := time.Since(start); took != 10*time.Second {
			t.Errorf("Stop returned after %v, want the write-back's grace of 10s", took)
		}
	})
}
