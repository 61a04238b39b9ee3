// Package sharing is the exchange between a breaker made with
// breaker.WithSync and the Syncer that shares its state beyond the process
// (breaker/redisshare). It is internal so that the breaker's exported API
// holds only what users call.
package sharing

import (
	"sync"
	"time"
)

// Settings are a breaker's trip condition and timing, as its options set
// them; a Syncer judges the shared counts with them the way the breaker
// judges its own.
type Settings struct {
	// FailureRatio and MinCalls are the trip condition, unless
	// ConsecutiveFailures is not zero.
	FailureRatio float64
	MinCalls     int
	// ConsecutiveFailures, when not zero, is the trip condition.
	ConsecutiveFailures int
	// Window is the rolling window of counts, in Buckets buckets.
	Window  time.Duration
	Buckets int
	// OpenDuration is how long the circuit stays open.
	OpenDuration time.Duration
}

// Member is one breaker as its Syncer sees it. Its methods never block and
// take no lock that a call through the breaker holds.
type Member interface {
	// Name is the breaker's name: replicas share the state of breakers of
	// the same name.
	Name() string
	// Settings returns the breaker's settings.
	Settings() Settings
	// Counts returns the successes and failures counted since its last call,
	// and starts counting again from zero.
	Counts() (successes, failures uint64)
	// LocalOpen returns how long the circuit stays open by this process's own
	// counts: zero unless the local breaker is open.
	LocalOpen() time.Duration
	// Hold holds the circuit open for d because the shared state says it is
	// open; d <= 0 ends the hold. The start and the end of a hold are
	// transitions whose Shared field is true. While the local breaker is open
	// itself, a hold changes nothing visible and makes no transition.
	Hold(d time.Duration)
}

// Syncer shares the state of its members. A breaker made with WithSync calls
// Register once when it is made, Unregister when a Group evicts it, and
// Notify (outside any lock, never on the call path) after each change of its
// local state. Its methods must not block.
type Syncer interface {
	Register(m Member)
	Unregister(m Member)
	Notify(m Member)
}

// Registry is the set of members of a Syncer, and the Syncer methods over
// it. A Syncer embeds it through an unexported alias (type registry =
// sharing.Registry), so that Register, Unregister and Notify make it a
// breaker.Syncer without showing in its documentation; its other operations
// are functions of this package, so that the embedder gains no other method.
// The zero Registry is empty and ready to use; it is safe for concurrent use
// and never calls a member while it holds its lock.
type Registry struct {
	mu    sync.Mutex
	holds map[Member]time.Time // the members, and when the hold set on each ends (zero: none)
	wake  chan struct{}
}

// Register adds m.
func (r *Registry) Register(m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holds == nil {
		r.holds = make(map[Member]time.Time)
	}
	if _, ok := r.holds[m]; !ok {
		r.holds[m] = time.Time{}
	}
}

// Unregister removes m.
func (r *Registry) Unregister(m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.holds, m)
}

// Notify wakes the channel of Wake. It never blocks.
func (r *Registry) Notify(Member) {
	select {
	case r.wakeup() <- struct{}{}:
	default:
	}
}

// Wake returns a channel that receives after r's Notify (at most one wake-up
// is kept).
func Wake(r *Registry) <-chan struct{} { return r.wakeup() }

func (r *Registry) wakeup() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{}, 1)
	}
	return r.wake
}

// Members returns the members of r now.
func Members(r *Registry) []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	ms := make([]Member, 0, len(r.holds))
	for m := range r.holds {
		ms = append(ms, m)
	}
	return ms
}

// SetHold records in r that the hold set on m ends at until (zero: no hold)
// and returns when the previous one ended, if m is still registered.
func SetHold(r *Registry, m Member, until time.Time) (previous time.Time, registered bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	previous, registered = r.holds[m]
	if registered {
		r.holds[m] = until
	}
	return previous, registered
}

// EndHold forgets in r the hold set on m if it ended at or before now, and
// reports whether it did.
func EndHold(r *Registry, m Member, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.holds[m]
	if !ok || until.IsZero() || now.Before(until) {
		return false
	}
	r.holds[m] = time.Time{}
	return true
}
