package ratelimit

import (
	"net/http"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
)

// ParseAnnouncement exposes the parser of Observe to the tests: the pause,
// the announced limit and how long it holds.
func ParseAnnouncement(resp *http.Response, now time.Time, maxPause time.Duration) (time.Duration, Limit, time.Duration) {
	if !announces(resp) {
		return 0, Limit{}, 0
	}
	a := parseAnnouncement(resp, now, maxPause)
	return a.pause, a.limit, a.valid
}

// KeyCount returns the number of keys l holds.
func (l *Limiter) KeyCount() int { return int(l.n.Load()) }

// Sharing reports whether l's decisions go to its Store (its breaker is not
// open).
func (l *Limiter) Sharing() bool { return l.sh != nil && l.sh.brk.State() != breaker.Open }

// Rate returns key's current rate in this process, in requests per second:
// its shortest window's, or lower while an announcement holds; 0 while it
// is paused. -1 for a key without local state.
func (l *Limiter) Rate(key string) float64 {
	now := time.Now()
	e, err := l.entry(key, now)
	if err != nil {
		return -1
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.b == nil {
		return -1
	}
	if e.pauseUntil.After(now) {
		return 0
	}
	return e.b.perSecond(now)
}
