package outbox_test

import (
	"context"
	"strconv"
	"sync"
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
