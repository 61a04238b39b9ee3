package retry

import (
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Test hooks: a fixed or seeded random source for the jitter, and the
// jitter's arithmetic with a given draw.

// WithJitterSource makes New use rnd as the jitter's random source instead of
// math/rand/v2's global one. Calls to rnd are serialised, so a seeded
// *rand.Rand's Float64 may be given.
func WithJitterSource(rnd func() float64) Option {
	var mu sync.Mutex
	return newOption("WithJitterSource", func(c *config) error {
		c.rnd = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return rnd()
		}
		return nil
	}, ctorNew)
}

// DelayFrom is Delay with the random source rnd.
func DelayFrom(attempt int, base, max time.Duration, rnd func() float64) time.Duration {
	return jitter(attempt, base, max, rnd)
}

// Ceiling is the upper bound of Delay for attempt.
func Ceiling(attempt int, base, max time.Duration) time.Duration { return ceiling(attempt, base, max) }

// NewFullJitter returns the backoff a Policy uses for each call that fails.
func NewFullJitter(base, max time.Duration, rnd func() float64) backoff.BackOff {
	return &fullJitter{base: base, max: max, rnd: rnd}
}
