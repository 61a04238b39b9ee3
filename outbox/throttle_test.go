package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
	"github.com/steadfast-go/steadfast/ratelimit"
)

// Throttles (WithThrottle, issue 15 item 5), on the fake clock of
// testing/synctest with the in-memory store: ratelimit's limiters run on the
// process clock, so they follow the bubble's.

// outcomeLog is a Store that records the kinds of outcome written back.
type outcomeLog struct {
	outbox.Store
	mu    sync.Mutex
	kinds map[backend.OutcomeKind]int
}

func (s *outcomeLog) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	s.mu.Lock()
	if s.kinds == nil {
		s.kinds = map[backend.OutcomeKind]int{}
	}
	for _, o := range outcomes {
		s.kinds[o.Kind]++
	}
	s.mu.Unlock()
	return s.Store.Settle(ctx, outcomes)
}

func (s *outcomeLog) count(k backend.OutcomeKind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kinds[k]
}

// destPublisher records, per destination, when each publish began and the
// attempt it carried.
type destPublisher struct {
	mu       sync.Mutex
	at       map[string][]time.Time
	attempts map[int]int
}

func (p *destPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.at == nil {
		p.at, p.attempts = map[string][]time.Time{}, map[int]int{}
	}
	p.at[d.Destination] = append(p.at[d.Destination], time.Now())
	p.attempts[d.Attempt]++
	return nil
}

func (p *destPublisher) times(dest string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.at[dest]...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 100_000 {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// throttleRun is what runThrottled saw.
type throttleRun struct {
	fastDone   time.Duration
	slowByThen int
	slowAt     []time.Time
	start      time.Time
	attempts   map[int]int
	kinds      *outcomeLog
	pauses     int
}

// runThrottled delivers n messages to "fast" and, with slow, n to "slow",
// limited to 10 per second in bursts of 1 and committed first, on a relay in
// a bubble. It returns how long after fast's messages were committed the
// last was published, how many of slow's had been published by then, slow's
// publish times and what was written back.
func runThrottled(t *testing.T, n int, slow bool) throttleRun {
	var res throttleRun
	synctest.Test(t, func(t *testing.T) {
		lim, err := ratelimit.New(ratelimit.WithLimit(10, time.Second, 1))
		if err != nil {
			t.Fatal(err)
		}
		mem := memstore.New()
		var slowMsgs, fastMsgs []outbox.Message
		for i := range n {
			slowMsgs = append(slowMsgs, outbox.Message{Topic: "t", Destination: "slow", Payload: []byte(fmt.Sprint(i))})
			fastMsgs = append(fastMsgs, outbox.Message{Topic: "t", Destination: "fast", Payload: []byte(fmt.Sprint(i))})
		}
		if slow {
			memEnqueue(t, mem, slowMsgs...)
		}
		store := &outcomeLog{Store: mem}
		pub := &destPublisher{}
		// Two slots in all, each destination may take both: a limited
		// destination that held an overall slot while throttled would hold
		// the other up. Its burst is spent before the start, so that every
		// one of its messages waits.
		if err := lim.Allow(context.Background(), "slow"); err != nil {
			t.Fatal(err)
		}
		r := startMem(t, store, pub, outbox.WithConcurrency(2), outbox.WithDestinationConcurrency(2), outbox.WithThrottle(func(ctx context.Context, d string) error {
			if d == "slow" {
				return lim.Allow(ctx, d)
			}
			return nil
		}))
		defer r.Stop(context.Background())
		// slow's messages are claimed and waiting for their throttle when
		// fast's are committed.
		time.Sleep(10 * time.Millisecond)
		memEnqueue(t, mem, fastMsgs...)
		res.start = time.Now()
		r.Wake()
		waitFor(t, "fast's messages", func() bool { return len(pub.times("fast")) == n })
		fast := pub.times("fast")
		res.fastDone = fast[n-1].Sub(res.start)
		res.slowByThen = len(pub.times("slow"))
		if slow {
			waitFor(t, "slow's messages", func() bool { return len(pub.times("slow")) == n })
		}
		waitFor(t, "every outcome written back", func() bool {
			st, err := mem.Stats(context.Background())
			return err == nil && st.Pending == 0
		})
		res.slowAt = pub.times("slow")
		pub.mu.Lock()
		res.attempts = pub.attempts
		pub.mu.Unlock()
		res.kinds = store
		ps, err := mem.Pauses(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		res.pauses = len(ps)
	})
	return res
}

// TestThrottledDestinationDoesNotSlowTheOthers is issue 15's "an outbox
// relay with two destinations, one of them limited to 10 per second: the
// other is delivered at full speed": fast's messages are delivered as soon
// as in a run without the limited destination, all of them while slow is
// still throttled; slow gets at most 10 per second plus its burst of 1;
// throttling spends no attempt and writes nothing to the store (no release,
// no pause, no renewal).
func TestThrottledDestinationDoesNotSlowTheOthers(t *testing.T) {
	const n = 30
	alone := runThrottled(t, n, false)
	both := runThrottled(t, n, true)

	if both.fastDone > alone.fastDone {
		t.Errorf("fast's %d messages took %v beside the limited destination, %v without it", n, both.fastDone, alone.fastDone)
	}
	if both.slowByThen >= n {
		t.Errorf("slow had all its %d messages published when fast finished: it was not throttled", both.slowByThen)
	}
	checkRate(t, both.slowAt, 10, 1)
	if got := both.slowAt[n-1].Sub(both.slowAt[0]); got < (n-1)*time.Second/10 {
		t.Errorf("slow's %d messages went in %v, faster than 10 per second", n, got)
	}
	if both.attempts[1] != 2*n || len(both.attempts) != 1 {
		t.Errorf("publishes by attempt %v, want all %d with attempt 1", both.attempts, 2*n)
	}
	if d := both.kinds.count(backend.Delivered); d != 2*n {
		t.Errorf("%d delivered outcomes written back, want %d", d, 2*n)
	}
	for _, k := range []backend.OutcomeKind{backend.Release, backend.Pause, backend.Retry, backend.Extend} {
		if c := both.kinds.count(k); c != 0 {
			t.Errorf("%d outcomes of kind %v written back: throttling must write nothing", c, k)
		}
	}
	if both.pauses != 0 {
		t.Errorf("%d pauses in the store, want none", both.pauses)
	}
}

// checkRate fails t when more than rate+burst of times fall within any
// second.
func checkRate(t *testing.T, times []time.Time, rate, burst int) {
	t.Helper()
	for i := 0; i+rate+burst < len(times); i++ {
		if d := times[i+rate+burst].Sub(times[i]); d < time.Second {
			t.Errorf("publishes %d to %d within %v: more than %d per second plus a burst of %d", i, i+rate+burst, d, rate, burst)
			return
		}
	}
}

// TestThrottleErrorHoldsBackForAPollInterval: a throttle that fails without
// saying when to come back (its limiter unreachable) holds the destination
// back for a poll interval, without spending an attempt.
func TestThrottleErrorHoldsBackForAPollInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		memEnqueue(t, mem, outbox.Message{ID: "0190f5e2-7b4c-7000-8000-0000000000e1", Topic: "t", Destination: "d", Payload: []byte(`{}`)})
		pub := &destPublisher{}
		var mu sync.Mutex
		calls := 0
		start := time.Now()
		r := startMem(t, mem, pub, outbox.WithPollInterval(3*time.Second), outbox.WithThrottle(func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return errors.New("limiter unreachable")
			}
			return nil
		}))
		defer r.Stop(context.Background())
		waitFor(t, "the delivery", func() bool { return len(pub.times("d")) == 1 })
		if got := pub.times("d")[0].Sub(start); got != 3*time.Second {
			t.Errorf("published %v after the failed throttle, want the poll interval, 3s", got)
		}
		if pub.attempts[1] != 1 {
			t.Errorf("publishes by attempt %v, want one with attempt 1", pub.attempts)
		}
	})
}

// TestStopReleasesThrottledMessages: messages waiting for their throttle are
// released at Stop, unpublished and with no attempt spent.
func TestStopReleasesThrottledMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New()
		const id = "0190f5e2-7b4c-7000-8000-0000000000e2"
		memEnqueue(t, mem, outbox.Message{ID: id, Topic: "t", Destination: "d", Payload: []byte(`{}`)})
		pub := &destPublisher{}
		r := startMem(t, mem, pub, outbox.WithThrottle(func(context.Context, string) error {
			return &ratelimit.LimitedError{Key: "d", Delay: time.Hour}
		}))
		time.Sleep(time.Minute)
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		rec, err := mem.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != outbox.StatePending || rec.Attempts != 0 || len(pub.times("d")) != 0 {
			t.Errorf("after Stop: %v with %d attempts, %d publishes; want pending, 0, 0", rec.State, rec.Attempts, len(pub.times("d")))
		}
		st, err := mem.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 1 {
			t.Errorf("pending %d, want 1", st.Pending)
		}
	})
}

func TestWithThrottleNil(t *testing.T) {
	_, err := outbox.NewRelay(memstore.New(), &destPublisher{}, outbox.WithThrottle(nil))
	if err == nil || !strings.Contains(err.Error(), "WithThrottle") {
		t.Fatalf("NewRelay(WithThrottle(nil)): %v, want an error naming WithThrottle", err)
	}
}
