package ratelimit

import (
	"iter"
	"slices"
	"strings"
	"time"
)

// KeyState is what a Limiter holds for one key, as Keys reports it.
type KeyState struct {
	// Rate is the key's sustained rate in this process, in requests per
	// second: its shortest window's, lower while a provider's announcement
	// holds, and divided by the replicas while this replica keeps to its
	// local share of a shared quota.
	Rate float64
	// Announced reports that a provider's announcement holds the rate
	// lower than the configured one.
	Announced bool
	// Local reports that this replica keeps to its local share of a shared
	// quota (the Store is away, or came back a moment ago).
	Local bool
	// Paused is how much longer the key is paused (a 429, or a budget
	// announced as spent); 0 when it is not.
	Paused time.Duration
}

// Keys returns the keys the limiter holds in this process (at most
// WithMaxKeys), in key order, with their state at the time of the call. It
// is for dashboards: it takes a snapshot under the limiter's locks, and
// yields outside them.
func (l *Limiter) Keys() iter.Seq2[string, KeyState] {
	if l == nil {
		return func(func(string, KeyState) bool) {}
	}
	now := time.Now()
	type row struct {
		key string
		st  KeyState
	}
	var rows []row
	local := l.sh != nil && now.UnixNano() < l.sh.settleUntil.Load()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		for k, e := range s.m {
			rows = append(rows, row{k, l.state(e, now, local)})
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.key, b.key) })
	return func(yield func(string, KeyState) bool) {
		for _, r := range rows {
			if !yield(r.key, r.st) {
				return
			}
		}
	}
}

func (l *Limiter) state(e *entry, now time.Time, local bool) KeyState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := KeyState{Rate: l.limits[0].perSecond()}
	if e.ann.inForce(now) {
		st.Rate, st.Announced = e.ann.perSec, true
	}
	if local {
		st.Rate /= float64(l.sh.replicas)
		st.Local = true
	}
	if e.pauseUntil.After(now) {
		st.Paused = e.pauseUntil.Sub(now)
	}
	return st
}
