package retry

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// fullJitter is capped exponential backoff with full jitter as a backoff/v4
// BackOff: its n-th NextBackOff returns a uniformly random duration in
// [0, min(max, base·2^(n-1))), as Delay does. It never returns backoff.Stop;
// the policy's attempts bound the retries. It holds the state of one call and
// is not safe for concurrent use; a Policy makes a fresh one for each call
// that fails.
type fullJitter struct {
	base, max time.Duration
	rnd       func() float64
	n         int
}

var _ backoff.BackOff = (*fullJitter)(nil)

func (b *fullJitter) NextBackOff() time.Duration {
	if b.n < 1<<30 {
		b.n++
	}
	return jitter(b.n, b.base, b.max, b.rnd)
}

func (b *fullJitter) Reset() { b.n = 0 }
