package retry

import (
	"math/rand/v2"
	"time"
)

// Delay returns the full-jitter delay before retry number attempt (1 for the
// wait after the first failed attempt): a uniformly random duration in
// [0, min(max, base·2^(attempt-1))), drawn from math/rand/v2's global source.
// It keeps no state, so callers that persist their attempts (the outbox
// relay) get the same schedule as Do. An attempt below 1 counts as 1; a max
// below base is raised to base; a base that is not positive means no wait.
// It is safe for concurrent use.
func Delay(attempt int, base, max time.Duration) time.Duration {
	return jitter(attempt, base, max, rand.Float64)
}

// jitter is Delay with the random source rnd, which returns values in
// [0, 1); values out of that range (a broken source) are clamped.
func jitter(attempt int, base, max time.Duration, rnd func() float64) time.Duration {
	c := ceiling(attempt, base, max)
	if c <= 0 {
		return 0
	}
	f := rnd()
	if !(f > 0) { // also NaN from a broken source
		return 0
	}
	x := f * float64(c)
	if x >= float64(c) { // f ≥ 1 from a broken source, or rounding for a large c
		return c - 1
	}
	return min(time.Duration(x), c-1)
}

// ceiling returns the upper bound of Delay for attempt: min(max,
// base·2^(attempt-1)), without overflow.
func ceiling(attempt int, base, max time.Duration) time.Duration {
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
