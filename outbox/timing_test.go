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

// slowClaim is a store whose claims take d to come back: the database has
// claimed (and started the lease) at once, the answer arrives d later.
type slowClaim struct {
	outbox.Store
	d time.Duration
}

func (s *slowClaim) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	type got struct {
		d outbox.Delivery
		c backend.Claim
	}
	var gs []got
	err := s.Store.Claim(ctx, req, func(d outbox.Delivery, c backend.Claim) { gs = append(gs, got{d, c}) })
	time.Sleep(s.d)
	for _, g := range gs {
		claimed(g.d, g.c)
	}
	return err
}

// leaseWatcher is a publisher that holds each publish until its context
// ends (or for hold, when set) and records, at the end of each publish,
// whether the store still leased the message to this relay.
type leaseWatcher struct {
	mem  *memstore.Store
	hold time.Duration

	mu       sync.Mutex
	publish  int
	overrun  []time.Duration // how long publishes ran past the store's lease
	causes   []error
	finished chan struct{}
}

func (p *leaseWatcher) Publish(ctx context.Context, d outbox.Delivery) error {
	p.mu.Lock()
	p.publish++
	p.mu.Unlock()
	var err error
	if p.hold > 0 {
		select {
		case <-time.After(p.hold):
		case <-ctx.Done():
			err = ctx.Err()
		}
	} else {
		<-ctx.Done()
		err = ctx.Err()
	}
	now, end := time.Now(), p.mem.LeaseEnd(d.ID)
	p.mu.Lock()
	if end.IsZero() || now.After(end) {
		p.overrun = append(p.overrun, now.Sub(end))
	}
	p.causes = append(p.causes, context.Cause(ctx))
	p.mu.Unlock()
	return err
}

// TestSlowClaimLease: the relay counts its lease from before it sent the
// claim, not from when the answer came back, so a slow claim cannot make a
// publish run past the lease the store holds (when another relay may claim
// the message again).
func TestSlowClaimLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		memEnqueue(t, mem, outbox.Message{Topic: "t"})
		pub := &leaseWatcher{mem: mem}
		r := startMem(t, &slowClaim{Store: mem, d: 6 * time.Second}, pub,
			outbox.WithLease(10*time.Second), outbox.WithPublishTimeout(5*time.Second), outbox.WithPollInterval(time.Hour))
		time.Sleep(time.Minute)
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		pub.mu.Lock()
		defer pub.mu.Unlock()
		for _, o := range pub.overrun {
			t.Errorf("a publish ran %v past the store's lease", o)
		}
	})
}

// TestLeaseRenewedWhilePublishing: a publish may take longer than the
// lease (the lease need not exceed the publish timeout): the relay renews
// the lease while it publishes, so another relay does not take the message
// over and publish it again.
func TestLeaseRenewedWhilePublishing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		memEnqueue(t, mem, outbox.Message{ID: "0190d8a2-0000-7000-8000-000000000001", Topic: "t", Key: "k"})
		slow := &leaseWatcher{mem: mem, hold: 10 * time.Second}
		a := startMem(t, mem, slow, outbox.WithLease(3*time.Second), outbox.WithPublishTimeout(20*time.Second))
		synctest.Wait() // a is publishing
		other := &timedPublisher{}
		b := startMem(t, mem, other, outbox.WithLease(3*time.Second), outbox.WithPollInterval(100*time.Millisecond))
		time.Sleep(time.Minute)
		for _, r := range []*outbox.Relay{a, b} {
			if err := r.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		slow.mu.Lock()
		defer slow.mu.Unlock()
		if slow.publish != 1 || len(other.times()) != 0 || len(slow.overrun) != 0 {
			t.Errorf("%d publishes by the slow relay (%d past the lease), %d by the other; want one, within the lease",
				slow.publish, len(slow.overrun), len(other.times()))
		}
		if rec, _ := mem.Get(context.Background(), "0190d8a2-0000-7000-8000-000000000001"); rec.State != outbox.StateDelivered || rec.Attempts != 1 {
			t.Errorf("message %v after %d attempts, want delivered after 1", rec.State, rec.Attempts)
		}
	})
}

// TestLeaseRenewedWhileWaiting: messages that wait for a publishing slot
// longer than the lease keep their lease: they are neither released nor
// taken over, and each is claimed once.
func TestLeaseRenewedWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		var ids []string
		for i := range 5 {
			id := "0190d8a2-0000-7000-8000-00000000000" + string(rune('a'+i))
			ids = append(ids, id)
			memEnqueue(t, mem, outbox.Message{ID: id, Topic: "t"})
		}
		pub := &leaseWatcher{mem: mem, hold: 2 * time.Second}
		opts := []outbox.Option{outbox.WithLease(3 * time.Second), outbox.WithPublishTimeout(2500 * time.Millisecond),
			outbox.WithConcurrency(1), outbox.WithPollInterval(100 * time.Millisecond)}
		a := startMem(t, mem, pub, opts...)
		synctest.Wait() // a claimed all five and publishes the first
		b := startMem(t, mem, pub, opts...)
		time.Sleep(time.Minute)
		for _, r := range []*outbox.Relay{a, b} {
			if err := r.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range ids {
			if n := mem.TimesClaimed(id); n != 1 {
				t.Errorf("message %s claimed %d times, want once: it waited for its slot under a renewed lease", id[len(id)-1:], n)
			}
		}
		pub.mu.Lock()
		defer pub.mu.Unlock()
		if pub.publish != 5 || len(pub.overrun) != 0 {
			t.Errorf("%d publishes, %d past the lease; want 5, none past", pub.publish, len(pub.overrun))
		}
	})
}

// frozenStore is the store as a relay that died sees it: once frozen, no
// call it makes reaches the database.
type frozenStore struct {
	outbox.Store
	frozen atomic.Bool
}

func (f *frozenStore) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	if f.frozen.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.Store.Claim(ctx, req, claimed)
}

func (f *frozenStore) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	if f.frozen.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.Store.Settle(ctx, outcomes)
}

// TestCrashedRelayKeysMoveSoon: with the default options, the keys a
// crashed relay held move to another relay within about 15 s (the default
// lease, renewed while a relay lives, is short).
func TestCrashedRelayKeysMoveSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		for k := range 3 {
			memEnqueue(t, mem, outbox.Message{Topic: "t", Key: "k" + string(rune('0'+k))}, outbox.Message{Topic: "t", Key: "k" + string(rune('0'+k))})
		}
		dying := &frozenStore{Store: mem}
		hang := outboxtestFunc(func(ctx context.Context, d outbox.Delivery) error {
			dying.frozen.Store(true) // the relay dies while it publishes
			<-ctx.Done()
			return ctx.Err()
		})
		a := startMem(t, dying, hang)
		synctest.Wait()
		died := time.Now()
		pub := &timedPublisher{}
		b := startMem(t, mem, pub)
		for len(pub.times()) < 6 {
			time.Sleep(100 * time.Millisecond)
		}
		if took := pub.times()[0].Sub(died); took > 15*time.Second {
			t.Errorf("the crashed relay's keys moved after %v, want within 15s", took)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = a.Stop(ctx)
		if err := b.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

type outboxtestFunc func(ctx context.Context, d outbox.Delivery) error

func (f outboxtestFunc) Publish(ctx context.Context, d outbox.Delivery) error { return f(ctx, d) }

// slowLaterClaims is a store whose first claim answers at once and whose
// later claims take a second (a claim loop polling a slow database).
type slowLaterClaims struct {
	outbox.Store
	claims  atomic.Int32
	settled chan time.Time
}

func (s *slowLaterClaims) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	if s.claims.Add(1) > 1 {
		time.Sleep(time.Second)
	}
	return s.Store.Claim(ctx, req, claimed)
}

func (s *slowLaterClaims) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	select {
	case s.settled <- time.Now():
	default:
	}
	return s.Store.Settle(ctx, outcomes)
}

// TestWriteBackDoesNotWaitForAClaimInFlight: the write-back waits for more
// outcomes only when messages are being published, not while another claim
// loop's claim, which holds room for messages it may not find, is in flight.
func TestWriteBackDoesNotWaitForAClaimInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		memEnqueue(t, mem, outbox.Message{Topic: "t"})
		s := &slowLaterClaims{Store: mem, settled: make(chan time.Time, 1)}
		pub := &timedPublisher{}
		r := startMem(t, s, pub, outbox.WithConcurrency(2))
		defer r.Stop(context.Background())
		settledAt := <-s.settled
		if at := pub.times(); len(at) != 1 || settledAt.Sub(at[0]) != 0 {
			t.Fatalf("published at %v, written back %v later: the write-back waited for a claim", at, settledAt.Sub(at[0]))
		}
	})
}
