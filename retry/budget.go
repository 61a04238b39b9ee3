package retry

import (
	"sync"
	"sync/atomic"
	"time"
)

// budgetSlots is the number of slots a budget's window is divided into: the
// window slides by one slot (a tenth of the window) at a time.
const budgetSlots = 10

// budget is a retry budget in the manner of Finagle's RetryBudget and
// Envoy's retry budget, counted over a sliding window rather than with
// Finagle's token bucket: a retry is allowed while
//
//	retries in the window + 1 <= ratio × requests in the window + floor
//
// where requests are first attempts. Under a total outage the retries of the
// window therefore stay at or under ratio × requests + floor, whatever the
// number of attempts per call; successes (new requests) and the passing of
// time (old retries leaving the window) restore it. It is safe for concurrent
// use; recording a request takes no lock.
type budget struct {
	ratio  float64
	floor  float64
	width  time.Duration // of one slot
	epoch  time.Time
	mu     sync.Mutex // serialises slot resets and retry decisions
	slots  [budgetSlots]budgetSlot
	warned int64 // slot index+1 of the last refusal reported for logging; 0: none
}

type budgetSlot struct {
	index    atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

func newBudget(ratio float64, floor int, window time.Duration, now time.Time) *budget {
	w := window / budgetSlots
	if w <= 0 {
		w = 1
	}
	return &budget{ratio: ratio, floor: float64(floor), width: w, epoch: now}
}

func (b *budget) slotIndex(now time.Time) int64 {
	d := now.Sub(b.epoch)
	if d < 0 {
		d = 0
	}
	return int64(d / b.width)
}

// slot returns the slot for index i, clearing it if it held an older index.
// b.mu must be held.
func (b *budget) slot(i int64) *budgetSlot {
	s := &b.slots[i%budgetSlots]
	if s.index.Load() != i {
		s.requests.Store(0)
		s.retries.Store(0)
		s.index.Store(i)
	}
	return s
}

// request records a first attempt. It takes the lock only for the first
// request of a slot.
func (b *budget) request(now time.Time) {
	i := b.slotIndex(now)
	s := &b.slots[i%budgetSlots]
	if s.index.Load() != i {
		b.mu.Lock()
		b.slot(i)
		b.mu.Unlock()
	}
	s.requests.Add(1)
}

// retry records a retry and reports true if the budget allows it, and
// reports false otherwise. report is true for the first refusal of a window,
// so that running out of budget is logged at most once per window.
func (b *budget) retry(now time.Time) (allowed, report bool) {
	i := b.slotIndex(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	var req, ret int64
	for k := range b.slots {
		s := &b.slots[k]
		if x := s.index.Load(); x > i-budgetSlots && x <= i {
			req += s.requests.Load()
			ret += s.retries.Load()
		}
	}
	allowed = float64(ret+1) <= b.ratio*float64(req)+b.floor
	if allowed {
		b.slot(i).retries.Add(1)
		return true, false
	}
	if b.warned == 0 || i+1-b.warned >= budgetSlots {
		b.warned = i + 1
		return false, true
	}
	return false, false
}

// idle reports whether the budget counted nothing during the window that ends
// at now, so that forgetting it changes nothing.
func (b *budget) idle(now time.Time) bool {
	i := b.slotIndex(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.slots {
		s := &b.slots[k]
		if s.index.Load() > i-budgetSlots && (s.requests.Load() > 0 || s.retries.Load() > 0) {
			return false
		}
	}
	return true
}
