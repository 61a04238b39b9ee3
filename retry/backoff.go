package retry

import (
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// FullJitter is capped exponential backoff with full jitter as a
// backoff/v4 BackOff: its n-th NextBackOff returns Delay(n, Base, Max, Rand),
// a uniformly random duration in [0, min(Max, Base·2^(n-1))). It never returns
// backoff.Stop; bound the retries with the policy's attempts or with
// backoff.WithMaxRetries.
//
// The zero count is the start of a call; Reset returns to it. A FullJitter
// holds the state of one call and is not safe for concurrent use; a Policy
// makes a fresh one for each call that fails (see Policy.NewBackOff).
type FullJitter struct {
	// Base is the ceiling of the first delay.
	Base time.Duration
	// Max caps every ceiling.
	Max time.Duration
	// Rand is the random source; nil means math/rand/v2's global source.
	Rand Rand

	n int
}

var _ backoff.BackOff = (*FullJitter)(nil)

// NextBackOff returns the next jittered delay.
func (b *FullJitter) NextBackOff() time.Duration {
	if b.n < 1<<30 {
		b.n++
	}
	return Delay(b.n, b.Base, b.Max, b.Rand)
}

// Reset starts the sequence again.
func (b *FullJitter) Reset() { b.n = 0 }

// lockedRand serialises calls to a Rand that may not be safe for concurrent
// use, such as *math/rand/v2.Rand, so that one Policy can share it.
type lockedRand struct {
	mu sync.Mutex
	r  Rand
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	f := l.r.Float64()
	l.mu.Unlock()
	return f
}
