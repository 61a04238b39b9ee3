package ratelimit_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/ratelimit"
)

func response(status int, kv ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h}
}

// A 429 stops the key for its Retry-After; the requests that waited then go
// one interval apart, not all at once.
func TestPauseFromA429HoldsTheKeyThenPaces(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(10, time.Second, 5))
		ctx := context.Background()
		start := time.Now()
		l.Observe(ctx, "k", response(429, "Retry-After", "2"), start)
		assert.Zero(t, l.Rate("k"))

		var mu sync.Mutex
		var at []time.Duration
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				require.NoError(t, l.Wait(ctx, "k"))
				mu.Lock()
				at = append(at, time.Since(start))
				mu.Unlock()
			})
		}
		wg.Wait()
		assert.ElementsMatch(t, []time.Duration{2000 * time.Millisecond, 2100 * time.Millisecond,
			2200 * time.Millisecond, 2300 * time.Millisecond, 2400 * time.Millisecond}, at)
		assert.Equal(t, 10.0, l.Rate("k"))

		// Allow says how long the pause lasts.
		l.Observe(ctx, "k", response(429, "Retry-After", "30"), time.Now())
		var le *ratelimit.LimitedError
		require.ErrorAs(t, l.Allow(ctx, "k"), &le)
		assert.Equal(t, 30*time.Second, le.Delay)
	})
}

// A waiter that reserved before a pause arrived does not go during it.
func TestWaiterAsleepWhenThePauseArrivesWaitsForIt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(1, time.Second, 1))
		ctx := context.Background()
		start := time.Now()
		require.NoError(t, l.Wait(ctx, "k"))
		done := make(chan time.Duration)
		go func() {
			assert.NoError(t, l.Wait(ctx, "k")) // reserves 1s
			done <- time.Since(start)
		}()
		time.Sleep(500 * time.Millisecond)
		l.Observe(ctx, "k", response(429, "Retry-After", "3"), start)
		assert.GreaterOrEqual(t, <-done, 3500*time.Millisecond)

		// With a deadline the new wait no longer fits: the error, at once.
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		errc := make(chan error)
		go func() { errc <- l.Wait(short, "k") }() // reserves a turn 1s away
		time.Sleep(100 * time.Millisecond)
		woke := time.Now()
		l.Observe(ctx, "k", response(429, "Retry-After", "5"), woke)
		var le *ratelimit.LimitedError
		require.ErrorAs(t, <-errc, &le)
		assert.Zero(t, time.Since(woke), "at once")
		assert.Equal(t, 5*time.Second, le.Delay)
	})
}

// An announced budget lowers the rate to what remains before the reset,
// starting with nothing saved up, and only until the reset.
func TestAnnouncedBudgetLowersTheRateUntilTheReset(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10))
		ctx := context.Background()
		start := time.Now()
		l.Observe(ctx, "k", response(200, "RateLimit", `"default";r=10;t=5`), start)
		assert.Equal(t, 2.0, l.Rate("k"))
		var at []time.Duration
		for range 3 {
			require.NoError(t, l.Wait(ctx, "k"))
			at = append(at, time.Since(start))
		}
		assert.Equal(t, []time.Duration{500 * time.Millisecond, time.Second, 1500 * time.Millisecond}, at)

		time.Sleep(5 * time.Second)
		require.NoError(t, l.Wait(ctx, "k"))
		assert.Equal(t, 100.0, l.Rate("k"), "back to the configured rate after the reset")

		// An announcement above the configured rate changes nothing.
		l.Observe(ctx, "k", response(200, "RateLimit", `"default";r=1000;t=1`), time.Now())
		assert.Equal(t, 100.0, l.Rate("k"))
	})
}

// Concurrent responses are reconciled by the lowest remaining budget; a
// response to a request sent after the announcement in force replaces it.
func TestConcurrentAnnouncementsLowestRemainingWins(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10))
		ctx := context.Background()
		sent := time.Now()
		time.Sleep(10 * time.Millisecond)
		l.Observe(ctx, "k", response(200, "RateLimit", `"d";r=50;t=10`), sent)
		assert.Equal(t, 5.0, l.Rate("k"))
		l.Observe(ctx, "k", response(200, "RateLimit", `"d";r=20;t=10`), sent)
		assert.Equal(t, 2.0, l.Rate("k"), "a lower concurrent announcement wins")
		l.Observe(ctx, "k", response(200, "RateLimit", `"d";r=40;t=10`), sent)
		assert.Equal(t, 2.0, l.Rate("k"), "a higher concurrent announcement is ignored")

		time.Sleep(10 * time.Millisecond)
		later := time.Now()
		time.Sleep(10 * time.Millisecond)
		l.Observe(ctx, "k", response(200, "RateLimit", `"d";r=40;t=10`), later)
		assert.Equal(t, 4.0, l.Rate("k"), "a later announcement replaces it")
	})
}

// What a provider says never holds a key longer than WithMaxPause.
func TestAnnouncementsAreCapped(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10), ratelimit.WithMaxPause(5*time.Second))
		ctx := context.Background()
		l.Observe(ctx, "k", response(429, "Retry-After", "86400"), time.Now())
		var le *ratelimit.LimitedError
		require.ErrorAs(t, l.Allow(ctx, "k"), &le)
		assert.Equal(t, 5*time.Second, le.Delay)

		l.Observe(ctx, "j", response(200, "X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "3600"), time.Now())
		assert.InDelta(t, 1.0/3600, l.Rate("j"), 1e-9)
		time.Sleep(5 * time.Second)
		assert.Equal(t, 100.0, l.Rate("j"), "the announced rate held 5s, not an hour")
	})
}

// Rate changes are logged, at most one info line a minute per key.
func TestRateChangesAreLogged(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		var mu sync.Mutex
		log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelInfo}))
		l, err := ratelimit.New(ratelimit.WithLimit(100, time.Second, 10), ratelimit.WithLogger(log))
		require.NoError(t, err)
		ctx := context.Background()
		l.Observe(ctx, "k", response(429, "Retry-After", "1"), time.Now())
		time.Sleep(2 * time.Second)
		l.Observe(ctx, "k", response(429, "Retry-After", "1"), time.Now()) // within the minute: debug
		l.Observe(ctx, "j", response(200, "RateLimit", `"d";r=1;t=10`), time.Now())
		for range 100 {
			l.Observe(ctx, "j", response(200, "RateLimit", `"d";r=1;t=10`), time.Now()) // no change: nothing
		}
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		assert.Equal(t, 2, strings.Count(out, "\n"), out)
		assert.Contains(t, out, `msg="ratelimit: provider asked to pause" key=k for=1s`)
		assert.Contains(t, out, `msg="ratelimit: provider announced a lower rate" key=j rate=0.1 for=10s`)
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
