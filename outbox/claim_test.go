package outbox_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
)

// excludingStore counts the claims that excluded a destination and came
// back short: on PostgreSQL each reads past every ready message of the
// excluded destinations.
type excludingStore struct {
	*memstore.Store
	mu            sync.Mutex
	claims, short int
}

func (s *excludingStore) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	n := 0
	err := s.Store.Claim(ctx, req, func(d outbox.Delivery, c backend.Claim) { n++; claimed(d, c) })
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims++
	if len(req.Exclude) > 0 && n < req.Limit {
		s.short++
	}
	return err
}

// TestHeldBackDestinationNotRescanned: a relay that holds its fill of the
// only destination with ready messages claims with it excluded, finds
// nothing else, and does not repeat that claim (which on PostgreSQL reads
// past the destination's whole backlog) before a poll interval has passed;
// it claims the destination's messages again as soon as it has room for
// them, so nothing is delayed.
func TestHeldBackDestinationNotRescanned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &excludingStore{Store: memstore.New()}
		const n = 3000
		for i := 0; i < n; i += 100 {
			msgs := make([]outbox.Message, 100)
			for j := range msgs {
				msgs[j] = outbox.Message{Topic: "orders", Payload: []byte(strconv.Itoa(i + j))}
			}
			memEnqueue(t, s.Store, msgs...)
		}
		pub := &timedPublisher{}
		start := time.Now()
		r := startMem(t, s, pub, outbox.WithBatchSize(20), outbox.WithDestinationConcurrency(2), outbox.WithPollInterval(time.Hour))
		for len(pub.times()) < n {
			synctest.Wait()
			if time.Since(start) > time.Minute {
				t.Fatalf("published %d of %d in a minute", len(pub.times()), n)
			}
			time.Sleep(time.Millisecond)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("delivering took %v, want no wait for a poll", took)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.short > 1 {
			t.Errorf("%d of %d claims excluded the destination held to its fill and came back short; want at most 1 per poll interval", s.short, s.claims)
		}
	})
}

// nextClaimingStore is a memstore whose write-back claims, as sqloutbox's
// SettleAndClaim does on PostgreSQL, the next message of each key it
// finishes (here: up to that many ready heads, which are those when the
// relay holds every key), and counts the relay's own claims.
type nextClaimingStore struct {
	*memstore.Store
	mu     sync.Mutex
	claims int
}

func (s *nextClaimingStore) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	s.mu.Lock()
	s.claims++
	s.mu.Unlock()
	return s.Store.Claim(ctx, req, claimed)
}

func (s *nextClaimingStore) SettleAndClaim(ctx context.Context, outcomes []backend.Outcome, lease time.Duration, claimed func(outbox.Delivery, backend.Claim)) ([]int64, error) {
	refused, err := s.Store.Settle(ctx, outcomes)
	if err != nil {
		return nil, err
	}
	finished := 0
	for _, o := range outcomes {
		if o.Kind == backend.Delivered || o.Kind == backend.Dead || o.Kind == backend.DeadUnsent {
			finished++
		}
	}
	if finished == 0 {
		return refused, nil
	}
	return refused, s.Store.Claim(ctx, backend.ClaimRequest{Limit: finished, Lease: lease}, claimed)
}

// TestWriteBackThatClaimedWakesNoClaim: a write-back that claimed the next
// message of every key it finished does not wake the claim loops, whose
// claim would find nothing (on PostgreSQL, a statement per write-back that
// reads the ready range for nothing); once keys run out, the relay claims
// again, and every message is delivered in order of its key without waiting
// for a poll.
func TestWriteBackThatClaimedWakesNoClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &nextClaimingStore{Store: memstore.New()}
		const keys, perKey = 10, 50
		msgs := make([]outbox.Message, 0, keys*perKey)
		for i := range keys * perKey {
			msgs = append(msgs, outbox.Message{Topic: "orders", Key: "k" + strconv.Itoa(i%keys), Payload: []byte(strconv.Itoa(i))})
		}
		memEnqueue(t, s.Store, msgs...)
		pub := &timedPublisher{}
		start := time.Now()
		r := startMem(t, s, pub, outbox.WithPollInterval(time.Hour))
		for len(pub.times()) < keys*perKey {
			synctest.Wait()
			if time.Since(start) > time.Minute {
				t.Fatalf("published %d of %d in a minute", len(pub.times()), keys*perKey)
			}
			time.Sleep(time.Millisecond)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("delivering took %v, want no wait for a poll", took)
		}
		last := map[string]int{}
		for _, d := range pub.ds {
			n, _ := strconv.Atoi(string(d.Payload))
			if prev, ok := last[d.Key]; ok && n < prev {
				t.Fatalf("key %s: %d published after %d", d.Key, n, prev)
			}
			last[d.Key] = n
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// The first claim takes every head; one per write-back that
		// finished a key's last message may follow (each claimer).
		if limit := 2 + 2*keys; s.claims > limit {
			t.Errorf("the relay claimed %d times for %d messages over %d keys; want at most %d", s.claims, keys*perKey, keys, limit)
		}
	})
}

// snapshotStore's write-back claims, for a keyed message it delivers,
// the next message of its key (the fixed next) without looking at pauses,
// as a PostgreSQL write-back does when the pause was recorded by the same
// statement or by one that committed after it began. paused is closed
// once a Pause outcome has been written.
type snapshotStore struct {
	*memstore.Store
	next   outbox.Delivery
	handed atomic.Bool
	once   sync.Once
	paused chan struct{}
}

func (s *snapshotStore) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	refused, err := s.Store.Settle(ctx, outcomes)
	for _, o := range outcomes {
		if o.Kind == backend.Pause {
			s.once.Do(func() { close(s.paused) })
		}
	}
	return refused, err
}

func (s *snapshotStore) SettleAndClaim(ctx context.Context, outcomes []backend.Outcome, lease time.Duration, claimed func(outbox.Delivery, backend.Claim)) ([]int64, error) {
	refused, err := s.Settle(ctx, outcomes)
	if err != nil {
		return nil, err
	}
	for _, o := range outcomes {
		if o.Kind == backend.Delivered && s.handed.CompareAndSwap(false, true) { // y1's
			claimed(s.next, backend.Claim{Token: "next"})
		}
	}
	return refused, nil
}

// TestWriteBackClaimsNothingOfAPausedDestination: a write-back may claim
// the next message of a key for a destination whose pause it does not see
// (recorded by the same statement, or by one that committed after it
// began); the relay, which knows of the pause, does not publish it but
// gives it back.
func TestWriteBackClaimsNothingOfAPausedDestination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &snapshotStore{Store: memstore.New(), paused: make(chan struct{}),
			next: outbox.Delivery{Message: outbox.Message{ID: "y2", Topic: "down", Destination: "down", Key: "y", Payload: []byte("y2")}, Position: 99, Attempt: 1}}
		// y1 is delivered once x1 has found its destination down and its
		// pause is written.
		pub := &timedPublisher{fail: func(n int, d outbox.Delivery) error {
			switch string(d.Payload) {
			case "x1":
				return outbox.ErrPaused
			case "y1":
				<-s.paused
			}
			return nil
		}}
		r := startMem(t, s, pub, outbox.WithPollInterval(time.Minute), outbox.WithPause(time.Hour))
		time.Sleep(time.Second)
		memEnqueue(t, s.Store,
			outbox.Message{Topic: "down", Key: "x", Payload: []byte("x1")},
			outbox.Message{Topic: "up", Key: "y", Payload: []byte("y1")},
		)
		r.Wake()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		pub.mu.Lock()
		defer pub.mu.Unlock()
		var got []string
		for _, d := range pub.ds {
			got = append(got, string(d.Payload))
		}
		if len(got) != 2 {
			t.Fatalf("published %v; want x1 and y1 only: y2's destination is paused", got)
		}
	})
}
