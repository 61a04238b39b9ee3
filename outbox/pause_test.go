package outbox_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
)

// slowPauseStore is a memstore whose write-back of a pause takes a while,
// as a loaded database's may: until it lands, the store's claims and its
// list of pauses know nothing of the pause.
type slowPauseStore struct {
	*memstore.Store
	delay time.Duration
}

func (s *slowPauseStore) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	for _, o := range outcomes {
		if o.Kind == backend.Pause {
			time.Sleep(s.delay)
			break
		}
	}
	return s.Store.Settle(ctx, outcomes)
}

// TestPauseKeptUntilItsWriteBackLands: a relay that paused a destination
// keeps the pause while the write-back that records it in the store is
// still on its way, even when a poll reads the store's pauses before it
// lands (CI failed PausedDestinationIsolated on the memstore once: the
// poll's answer, without the pause, replaced the relay's own, and the
// next claims took the destination's messages again).
func TestPauseKeptUntilItsWriteBackLands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 10 * time.Millisecond
		s := &slowPauseStore{Store: memstore.New(), delay: 10 * poll}
		var msgs []outbox.Message
		for i := range 40 {
			msgs = append(msgs, outbox.Message{Topic: "down", Payload: []byte("d" + strconv.Itoa(i))})
		}
		memEnqueue(t, s.Store, msgs...)
		msgs = msgs[:0]
		for i := range 400 {
			msgs = append(msgs, outbox.Message{Topic: "up", Payload: []byte("u" + strconv.Itoa(i))})
		}
		memEnqueue(t, s.Store, msgs...)
		pub := &timedPublisher{fail: func(n int, d outbox.Delivery) error {
			if d.Topic == "down" {
				return outbox.Pause(errors.New("breaker open"), time.Hour)
			}
			time.Sleep(time.Millisecond)
			return nil
		}}
		r := startMem(t, s, pub, outbox.WithPollInterval(poll), outbox.WithBatchSize(10), outbox.WithDestinationConcurrency(1))
		for start := time.Now(); time.Since(start) < 5*time.Second; {
			time.Sleep(poll)
		}
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		pub.mu.Lock()
		defer pub.mu.Unlock()
		down, up := 0, 0
		for _, d := range pub.ds {
			if d.Topic == "down" {
				down++
			} else {
				up++
			}
		}
		if down != 1 || up != 400 {
			t.Errorf("published %d to the paused destination (want 1: the publish that paused it) and %d of 400 to the other", down, up)
		}
		ps, err := s.Pauses(context.Background())
		if err != nil || len(ps) != 1 || ps[0].Destination != "down" {
			t.Errorf("Pauses = %+v, %v; want down", ps, err)
		}
	})
}
