package retry

import (
	"math/rand/v2"
	"time"
)

// Rand is the source of randomness for jitter. *math/rand/v2.Rand satisfies
// it. A nil Rand means the global source of math/rand/v2.
type Rand interface {
	Float64() float64
}

// Delay returns the full-jitter delay before retry number attempt (1 for the
// wait after the first failed attempt): a uniformly random duration in
// [0, min(max, base·2^(attempt-1))). It keeps no state, so callers that
// persist their attempts (the outbox relay) get the same schedule as Do.
// An attempt below 1 counts as 1; a max below base is raised to base.
func Delay(attempt int, base, max time.Duration, rnd Rand) time.Duration {
	c := Ceiling(attempt, base, max)
	if c <= 0 {
		return 0
	}
	var f float64
	if rnd == nil {
		f = rand.Float64()
	} else {
		f = rnd.Float64()
	}
	if !(f > 0) { // also NaN from a broken source
		return 0
	}
	x := f * float64(c)
	if x >= float64(c) { // f ≥ 1 from a broken source, or rounding for a large c
		return c - 1
	}
	return min(time.Duration(x), c-1)
}

// Ceiling returns the upper bound of Delay for attempt: min(max,
// base·2^(attempt-1)), without overflow.
func Ceiling(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	if max < base {
		max = base
	}
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}
