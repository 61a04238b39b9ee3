package ops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/steadfast-go/steadfast/ratelimit"
)

// RateLimiter reports the keys a rate limiter holds in this process.
// *ratelimit.Limiter implements it.
type RateLimiter interface {
	Keys() iter.Seq2[string, ratelimit.KeyState]
}

// maxLimitRows bounds the rate-limit table.
const maxLimitRows = 200

// limiterSource is a limiter and the name the page shows it under.
type limiterSource struct {
	name string
	l    RateLimiter
}

// WithRateLimiter shows l's keys in the page's rate-limit table (this
// replica's: the rate it keeps to, lowered by a provider's announcement or
// to its local share of a shared quota, and how long a key is paused), under
// name (the provider, say). Give it once per limiter. l must not be nil and
// name not empty. Off by default.
func WithRateLimiter(name string, l RateLimiter) Option {
	return newOption("WithRateLimiter", func(c *config) error {
		if isNil(l) {
			return errors.New("limiter is nil")
		}
		if name == "" {
			return errors.New("name is empty")
		}
		c.limiters = append(c.limiters, limiterSource{name, l})
		return nil
	})
}

// limitRow is one key of one limiter.
type limitRow struct {
	Limiter, Key string
	ratelimit.KeyState
}

// limits returns the limiters' keys, paused ones first, then those an
// announcement or a local share holds lower, at most maxLimitRows, and how
// many more there were.
func limits(_ context.Context, sources []limiterSource) ([]limitRow, int) {
	var rows []limitRow
	for _, s := range sources {
		for k, st := range s.l.Keys() {
			rows = append(rows, limitRow{Limiter: s.name, Key: k, KeyState: st})
		}
	}
	rank := func(r limitRow) int {
		switch {
		case r.Paused > 0:
			return 0
		case r.Announced || r.Local:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(rows, func(a, b limitRow) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Limiter, b.Limiter); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	more := 0
	if len(rows) > maxLimitRows {
		more, rows = len(rows)-maxLimitRows, rows[:maxLimitRows]
	}
	return rows, more
}

// rate writes a rate per second the way it reads best: 12/s, 0.5/s, 30/min.
func rate(perSecond float64) string {
	switch {
	case perSecond <= 0:
		return "0"
	case perSecond >= 10:
		return fmt.Sprintf("%.0f/s", perSecond)
	case perSecond >= 1:
		return fmt.Sprintf("%.3g/s", perSecond)
	case perSecond*60 >= 1:
		return fmt.Sprintf("%.3g/min", perSecond*60)
	}
	return fmt.Sprintf("%.3g/h", perSecond*float64(time.Hour/time.Second))
}
