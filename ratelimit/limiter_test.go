package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/ratelimit"
)

func newLimiter(t testing.TB, opts ...ratelimit.Option) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(append([]ratelimit.Option{ratelimit.WithLogger(quiet)}, opts...)...)
	require.NoError(t, err)
	return l
}

func TestNewRefusesWhatMakesNoSense(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts []ratelimit.Option
		want string
	}{
		{nil, "ratelimit: New: no limit: give at least one WithLimit"},
		{[]ratelimit.Option{ratelimit.WithLimit(0, time.Second, 1)}, "ratelimit: New: WithLimit: rate 0 must be at least 1"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, 0, 1)}, "ratelimit: New: WithLimit: period 0s must be positive"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 0)}, "ratelimit: New: WithLimit: burst 0 must be in [1, 1048576]"},
		{[]ratelimit.Option{ratelimit.WithLimit(2_000_000, time.Second, 1)}, "ratelimit: New: WithLimit: 2000000 per 1s is more than one request per microsecond"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithLimit(2, time.Second, 1)}, "ratelimit: New: WithLimit: a window of 1s is already set"},
		{[]ratelimit.Option{
			ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithLimit(1, time.Minute, 1), ratelimit.WithLimit(1, time.Hour, 1),
			ratelimit.WithLimit(1, 24*time.Hour, 1), ratelimit.WithLimit(1, 48*time.Hour, 1),
		}, "ratelimit: New: WithLimit: at most 4 windows"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), nil}, "ratelimit: New: option 1 is nil"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithStore(nil, 2)}, "ratelimit: New: WithStore: store is nil"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithMaxKeys(0)}, "ratelimit: New: WithMaxKeys: n 0 must be at least 1"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithMaxPause(-time.Second)}, "ratelimit: New: WithMaxPause: pause -1s must be positive"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithKey(nil)}, "ratelimit: New: WithKey applies to NewTransport, not New"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithLogger(nil)}, "ratelimit: New: WithLogger: logger is nil"},
		{[]ratelimit.Option{ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithMeterProvider(nil)}, "ratelimit: New: WithMeterProvider: meter provider is nil"},
	} {
		_, err := ratelimit.New(tc.opts...)
		assert.EqualError(t, err, tc.want)
	}

	l := newLimiter(t, ratelimit.WithLimit(1, time.Second, 1))
	_, err := ratelimit.NewTransport(nil, l, ratelimit.WithKey(nil))
	assert.EqualError(t, err, "ratelimit: NewTransport: WithKey: key function is nil")
	_, err = ratelimit.NewTransport(nil, l, ratelimit.WithMaxKeys(3))
	assert.EqualError(t, err, "ratelimit: NewTransport: WithMaxKeys applies to New, not NewTransport")
	_, err = ratelimit.NewTransport(nil, nil)
	assert.EqualError(t, err, "ratelimit: NewTransport: the *Limiter is nil")
}

func TestWithStoreRefusesReplicasOutOfRange(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, -1, 1001} {
		_, err := ratelimit.New(ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithStore(failingStore{}, n))
		assert.EqualError(t, err, fmt.Sprintf("ratelimit: New: WithStore: replicas %d must be in [1, 1000]", n))
	}
}

func TestTypedNilStoreIsRefused(t *testing.T) {
	t.Parallel()
	_, err := ratelimit.New(ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithStore((*switchStore)(nil), 2))
	assert.EqualError(t, err, "ratelimit: New: WithStore: store is a nil *ratelimit_test.switchStore")
}

func TestNilLimiterReturnsErrors(t *testing.T) {
	t.Parallel()
	var l *ratelimit.Limiter
	assert.Error(t, l.Wait(context.Background(), "k"))
	assert.Error(t, l.Allow(context.Background(), "k"))
	l.Observe(context.Background(), "k", nil, time.Now()) // does not panic
}

func TestKeyLongerThan512BytesIsRefused(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, ratelimit.WithLimit(10, time.Second, 1))
	err := l.Wait(context.Background(), strings.Repeat("k", 513))
	assert.EqualError(t, err, "ratelimit: key of 513 bytes is longer than 512")
	assert.NoError(t, l.Wait(context.Background(), strings.Repeat("k", 512)))
}

// A burst goes at once, the next request waits one interval, and Allow
// refuses with the delay instead of waiting.
func TestWaitAndAllowKeepToTheRate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(10, time.Second, 3))
		ctx := context.Background()
		start := time.Now()
		for range 3 {
			require.NoError(t, l.Allow(ctx, "a"))
		}
		err := l.Allow(ctx, "a")
		var le *ratelimit.LimitedError
		require.ErrorAs(t, err, &le)
		assert.ErrorIs(t, err, ratelimit.ErrLimited)
		assert.Equal(t, "a", le.Key)
		assert.Equal(t, 100*time.Millisecond, le.Delay)
		assert.Equal(t, 100*time.Millisecond, le.RetryAfter())
		assert.Equal(t, `ratelimit: key "a" is limited for 100ms`, err.Error())

		require.NoError(t, l.Wait(ctx, "a"))
		assert.Equal(t, 100*time.Millisecond, time.Since(start), "the fourth waits one interval")
		require.NoError(t, l.Wait(ctx, "a"))
		assert.Equal(t, 200*time.Millisecond, time.Since(start))

		// Keys are independent.
		require.NoError(t, l.Allow(ctx, "b"))
	})
}

// It must show: a caller whose deadline is shorter than the wait gets the
// error at once, with the right delay.
func TestWaitBeyondDeadlineFailsAtOnceWithTheDelay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(2, time.Second, 1))
		require.NoError(t, l.Wait(context.Background(), "k"))

		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := l.Wait(ctx, "k")
		assert.Zero(t, time.Since(start), "no waiting")
		var le *ratelimit.LimitedError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, 500*time.Millisecond, le.Delay)

		// Nothing was taken: with a deadline that fits, the wait is 500ms.
		ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		require.NoError(t, l.Wait(ctx2, "k"))
		assert.Equal(t, 500*time.Millisecond, time.Since(start))

		// A wait that would end exactly at the deadline outlasts it.
		ctx3, cancel3 := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel3()
		assert.ErrorIs(t, l.Wait(ctx3, "k"), ratelimit.ErrLimited)
	})
}

// Cancelling a waiting caller gives its place back.
func TestCancelledWaitGivesItsTurnBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(1, time.Second, 1))
		require.NoError(t, l.Wait(context.Background(), "k"))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Wait(ctx, "k") }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		start := time.Now()
		require.NoError(t, l.Wait(context.Background(), "k"))
		assert.Equal(t, 900*time.Millisecond, time.Since(start), "the cancelled waiter's turn was given back")

		done2, cancel2 := context.WithCancel(context.Background())
		cancel2()
		assert.ErrorIs(t, l.Wait(done2, "k"), context.Canceled, "an ended context fails before anything")
	})
}

// Several windows: a request goes when every window lets it.
func TestSeveralWindowsPerKey(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t,
			ratelimit.WithLimit(10, time.Minute, 10), // given first, enforced with the other
			ratelimit.WithLimit(5, time.Second, 2),
		)
		ctx := context.Background()
		start := time.Now()
		var at []time.Duration
		for range 12 {
			require.NoError(t, l.Wait(ctx, "k"))
			at = append(at, time.Since(start))
		}
		// 2 at once, then one every 200ms, until the minute's 10 are spent;
		// then one every 6s.
		want := []time.Duration{0, 0, 200, 400, 600, 800, 1000, 1200, 1400, 1600}
		for i, w := range want {
			assert.Equal(t, w*time.Millisecond, at[i], "request %d", i)
		}
		assert.Equal(t, 6*time.Second, at[10], "the minute's window holds the 11th")
		assert.Equal(t, 12*time.Second, at[11])

		// Allow sees the longest of the windows' delays.
		err := l.Allow(ctx, "k")
		var le *ratelimit.LimitedError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, 6*time.Second, le.Delay)
	})
}

// Many goroutines on one key together keep to the rate.
func TestConcurrentWaitersKeepToTheRate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var mu sync.Mutex
		n := 0
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				for {
					if err := l.Wait(ctx, "k"); err != nil {
						return
					}
					mu.Lock()
					n++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.InDelta(t, 10+100*10, n, 2, "burst plus 10 s at 100/s")
	})
}

// The number of keys is bounded; idle keys are forgotten to make room, and
// forgetting them changes nothing.
func TestKeysAreBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, ratelimit.WithLimit(1, time.Second, 1), ratelimit.WithMaxKeys(3))
		ctx := context.Background()
		for _, k := range []string{"a", "b", "c"} {
			require.NoError(t, l.Allow(ctx, k))
		}
		err := l.Allow(ctx, "d")
		assert.ErrorIs(t, err, ratelimit.ErrTooManyKeys)
		assert.EqualError(t, err, "ratelimit: too many keys: 3 keys are held (WithMaxKeys) and none is idle")
		assert.Equal(t, 3, l.KeyCount())

		time.Sleep(time.Second) // every bucket is whole again: idle
		require.NoError(t, l.Allow(ctx, "d"))
		assert.Equal(t, 1, l.KeyCount(), "the idle keys were forgotten")
		require.NoError(t, l.Allow(ctx, "a"), "a forgotten key starts with its whole budget, as it had")
		assert.ErrorIs(t, l.Allow(ctx, "a"), ratelimit.ErrLimited)
	})
}

// A failingStore fails every call, as an unreachable Redis does.
type failingStore struct{}

var errDown = errors.New("store down")

func (failingStore) Reserve(context.Context, string, []ratelimit.Limit, time.Duration, time.Duration) (time.Duration, error) {
	return 0, errDown
}
func (failingStore) Pause(context.Context, string, time.Duration) error { return errDown }
func (failingStore) Learn(context.Context, string, ratelimit.Limit, time.Duration, time.Duration) error {
	return errDown
}
