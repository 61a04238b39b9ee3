package ratelimit

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// bucket is a key's quota in this process, on golang.org/x/time/rate: one
// rate.Limiter per window, and one for the limit a provider announced while
// it holds. Its entry's mutex guards it, except that the fast path of a
// simple entry calls AllowN on wins[0] (its entry's fast) without it.
type bucket struct {
	wins    []*rate.Limiter
	learned *rate.Limiter // nil: none in force
	until   time.Time     // when learned ends
}

// newBucket returns the windows of limits, every rate and burst multiplied
// by scale (1, or 1/replicas for the local share of a shared quota). A bucket
// that is not full starts with no budget saved up.
func newBucket(limits []Limit, scale float64, full bool, now time.Time) *bucket {
	b := &bucket{wins: make([]*rate.Limiter, len(limits))}
	for i, l := range limits {
		b.wins[i] = rate.NewLimiter(rate.Limit(l.perSecond()*scale), scaledBurst(l.Burst, scale))
		if !full {
			empty(b.wins[i], now)
		}
	}
	return b
}

func scaledBurst(burst int, scale float64) int {
	return max(1, int(float64(burst)*scale))
}

// empty takes every token lim has at now, without allocating.
func empty(lim *rate.Limiter, now time.Time) {
	b := lim.Burst()
	lim.SetBurstAt(now, 0)
	lim.SetBurstAt(now, b) // the tokens are capped at the burst of the moment: 0
}

// hold makes lim give its next token d after now, and the following ones one
// interval apart: the tokens it has are taken and a debt of d's worth is
// added. Waiters that had already reserved a token keep their place in the
// debt.
func hold(lim *rate.Limiter, now time.Time, d time.Duration) {
	tokens := lim.TokensAt(now)
	want := 1 - float64(lim.Limit())*d.Seconds() // tokens at now, so that one is there at now+d
	n := math.Ceil(tokens - want)
	if n <= 0 {
		return
	}
	n = min(n, float64(math.MaxInt32))
	b := lim.Burst()
	lim.SetBurstAt(now, max(b, int(n))) // ReserveN refuses more than the burst
	lim.ReserveN(now, int(n))
	lim.SetBurstAt(now, b)
}

// setLearned makes the bucket hold a provider's announced limit (r requests
// per second with bursts of burst) until until. A new announced limit starts
// with no budget saved up; a change keeps what the limiter owes.
func (b *bucket) setLearned(now time.Time, r float64, burst int, until time.Time) {
	if b.learned == nil || !now.Before(b.until) {
		b.learned = rate.NewLimiter(rate.Limit(r), burst)
		empty(b.learned, now)
	} else {
		b.learned.SetLimitAt(now, rate.Limit(r))
		b.learned.SetBurstAt(now, burst)
	}
	b.until = until
}

// hold makes the whole bucket give nothing before now+d: the shortest window
// and the announced limit start again then, with no budget saved up, in new
// limiters, since the requests that had a turn in the old ones (woken by the
// pause) decide again and their turns are forgotten. Longer windows keep
// their budget: an hourly quota is not lost to a pause.
func (b *bucket) hold(now time.Time, d time.Duration) {
	b.wins[0] = held(b.wins[0], now, d)
	if b.learned != nil && now.Before(b.until) {
		b.learned = held(b.learned, now, d)
	}
}

// held returns a limiter like lim that gives its next token d after now.
func held(lim *rate.Limiter, now time.Time, d time.Duration) *rate.Limiter {
	n := rate.NewLimiter(lim.Limit(), lim.Burst())
	empty(n, now)
	hold(n, now, d)
	return n
}

// limiters appends to dst the limiters in force at now.
func (b *bucket) limiters(dst []*rate.Limiter, now time.Time) []*rate.Limiter {
	dst = append(dst, b.wins...)
	if b.learned != nil {
		if now.Before(b.until) {
			dst = append(dst, b.learned)
		} else {
			b.learned = nil
		}
	}
	return dst
}

// take decides for one request at now. When every limiter in force has a
// token it takes one from each and returns 0. Otherwise it returns the delay
// until all will; when that is at most maxWait it reserves them, appending
// the reservations to res (cancel them if the caller gives up), and when it is
// longer it takes nothing.
func (b *bucket) take(now time.Time, maxWait time.Duration, res []*rate.Reservation) (time.Duration, []*rate.Reservation) {
	var arr [maxWindows + 1]*rate.Limiter
	lims := b.limiters(arr[:0], now)
	var delay time.Duration
	for _, l := range lims {
		if t := l.TokensAt(now); t < 1 {
			delay = max(delay, time.Duration((1-t)/float64(l.Limit())*float64(time.Second)))
		}
	}
	if delay > maxWait {
		return delay, res
	}
	if delay == 0 {
		taken := 0
		for _, l := range lims {
			if !l.AllowN(now, 1) {
				break // only a single-window fast path races here: nothing was taken
			}
			taken++
		}
		if taken == len(lims) {
			return 0, res
		}
	}
	for _, l := range lims {
		r := l.ReserveN(now, 1)
		res = append(res, r)
		delay = max(delay, r.DelayFrom(now))
	}
	if delay > maxWait {
		cancel(res, now)
		return delay, res[:0]
	}
	return delay, res
}

func cancel(res []*rate.Reservation, now time.Time) {
	for _, r := range res {
		r.CancelAt(now)
	}
}

// idle reports whether the bucket has its whole budget at now, so that
// forgetting it loses nothing: a new bucket would be the same.
func (b *bucket) idle(now time.Time) bool {
	if b.learned != nil && now.Before(b.until) {
		return false
	}
	for _, l := range b.wins {
		if l.TokensAt(now) < float64(l.Burst()) {
			return false
		}
	}
	return true
}

// owes reports whether requests wait on the bucket: a reservation or a hold
// beyond now.
func (b *bucket) owes(now time.Time) bool {
	if b.learned != nil && b.learned.TokensAt(now) < 0 {
		return true
	}
	for _, l := range b.wins {
		if l.TokensAt(now) < 0 {
			return true
		}
	}
	return false
}

// perSecond returns the sustained rate of the bucket's shortest window or of the
// announced limit, whichever is lower, in requests per second.
func (b *bucket) perSecond(now time.Time) float64 {
	r := float64(b.wins[0].Limit())
	if b.learned != nil && now.Before(b.until) {
		r = min(r, float64(b.learned.Limit()))
	}
	return r
}
