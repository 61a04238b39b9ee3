package ops

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
)

// The chart of this replica's deliveries: ringSlots slots of ringSlot each.
const (
	ringSlot  = 15 * time.Second
	ringSlots = 60
)

// ring counts this replica's publishes per slot of time, for the last
// ringSlots slots. It is all the page keeps in memory: fixed in size.
type ring struct {
	mu    sync.Mutex
	slots [ringSlots]slot
}

type slot struct {
	at                int64 // slot number (Unix time / ringSlot); 0 unused
	delivered, failed uint64
}

func slotOf(t time.Time) int64 { return t.UnixNano() / int64(ringSlot) }

func (r *ring) add(t time.Time, delivered bool) {
	n := slotOf(t)
	r.mu.Lock()
	s := &r.slots[n%ringSlots]
	if s.at != n {
		*s = slot{at: n}
	}
	if delivered {
		s.delivered++
	} else {
		s.failed++
	}
	r.mu.Unlock()
}

// bar is one slot of the chart, oldest first.
type bar struct {
	Start             time.Time
	Delivered, Failed uint64
}

// snapshot returns the last ringSlots slots up to now, oldest first.
func (r *ring) snapshot(now time.Time) []bar {
	last := slotOf(now)
	out := make([]bar, ringSlots)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range out {
		n := last - int64(ringSlots-1-i)
		b := bar{Start: time.Unix(0, n*int64(ringSlot))}
		if s := r.slots[((n%ringSlots)+ringSlots)%ringSlots]; s.at == n {
			b.Delivered, b.Failed = s.delivered, s.failed
		}
		out[i] = b
	}
	return out
}

// observed is a Publisher whose outcomes the page's chart counts.
type observed struct {
	next outbox.Publisher
	ring *ring
}

func (o observed) Publish(ctx context.Context, d outbox.Delivery) error {
	err := o.next.Publish(ctx, d)
	switch {
	case err == nil:
		o.ring.add(time.Now(), true)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// The relay stopping: not the destination's failure.
	default:
		o.ring.add(time.Now(), false)
	}
	return err
}
