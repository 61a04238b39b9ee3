package main

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
)

// statuses is the life of a payment, one webhook event per step; an order's
// version is the index of its latest applied status, plus one.
var statuses = []string{"payment.authorized", "payment.captured", "payment.settled", "payment.paid_out"}

// event is one event of the payment provider: the body of its webhook and
// an item of its events list, alike (as Stripe's are).
type event struct {
	ID      string `json:"id"`
	Object  string `json:"object,omitempty"` // "event"
	Type    string `json:"type"`
	Created int64  `json:"created,omitempty"` // Unix seconds, set when the provider creates it
	OrderID string `json:"order_id"`
	Version int64  `json:"version"`
}

// wave is a group of deliveries the provider sends at the same moment; a wave
// that holds one event twice is a pair of concurrent duplicates.
type wave []*event

// plan is the whole workload, fixed by the seed: the events, how many times
// each is delivered, which copies travel together, the order of the waves,
// and the events the provider drops.
type plan struct {
	orders  []string
	events  []*event
	waves   []wave
	dropped map[string]bool // events created but never sent, not even retried
}

// dropShare is the share of events the provider never delivers by webhook:
// only the events list has them.
const dropShare = 0.05

// makePlan builds the workload of a storm. Each event is delivered once, and
// a share of them again: some at the same moment (concurrent duplicates),
// some later (redeliveries). About 5% are dropped: each has one wave, the
// moment the provider creates it, and is never sent (at least one event is
// dropped, however small the plan). The waves are shuffled within a sliding
// window, so that events of one order arrive out of order.
func makePlan(seed uint64, orders int) *plan {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := &plan{dropped: map[string]bool{}}
	for o := range orders {
		id := fmt.Sprintf("ord_%05d", o)
		p.orders = append(p.orders, id)
		for v, st := range statuses {
			p.events = append(p.events, &event{
				ID:      fmt.Sprintf("evt_%05d_%d", o, v+1),
				Type:    st,
				OrderID: id,
				Version: int64(v + 1),
			})
		}
	}
	// Dropped events are chosen apart from the rest of the plan; when the
	// share rounds down to none, the event closest to it is dropped.
	var closest *event
	for _, ev := range p.events {
		f := chance(seed, "drop", ev.ID)
		if f < dropShare {
			p.dropped[ev.ID] = true
		}
		if closest == nil || f < chance(seed, "drop", closest.ID) {
			closest = ev
		}
	}
	if len(p.dropped) == 0 && closest != nil {
		p.dropped[closest.ID] = true
	}
	var later []*event
	for _, ev := range p.events {
		w := wave{ev}
		switch r := rng.Float64(); {
		case p.dropped[ev.ID]: // created, never sent
		case r < 0.15: // two copies at once
			w = append(w, ev)
		case r < 0.20: // three copies at once
			w = append(w, ev, ev)
		case r < 0.45: // delivered again later
			later = append(later, ev)
		}
		p.waves = append(p.waves, w)
	}
	for _, ev := range later {
		// A redelivery lands anywhere after its original.
		p.waves = append(p.waves, wave{ev})
	}
	// Reorder within a window: an event may overtake the ones sent up to
	// window waves before it.
	const window = 12
	for i := range p.waves {
		j := i + rng.IntN(window)
		if j < len(p.waves) {
			p.waves[i], p.waves[j] = p.waves[j], p.waves[i]
		}
	}
	return p
}

// chance returns a number in [0,1) fixed by the seed and the words, so that a
// fault decided for "delivery 2 of event X" is the same in every run with the
// same seed, whatever the goroutines' timing.
func chance(seed uint64, words ...any) float64 {
	h := fnv.New64a()
	fmt.Fprint(h, seed)
	for _, w := range words {
		fmt.Fprint(h, "|", w)
	}
	// FNV's high bits hardly change with the last byte ("list|1", "list|2"):
	// mix them (SplitMix64's finalizer) before taking the top 53.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}
