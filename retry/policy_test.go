package retry_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/retry"
)

var errFlaky = errors.New("flaky")

// newPolicy returns a Policy on clk without a budget, with the options added.
func newPolicy(t *testing.T, clk retry.Clock, opts ...retry.Option) *retry.Policy {
	t.Helper()
	p, err := retry.New(append([]retry.Option{retry.WithClock(clk), retry.WithoutBudget()}, opts...)...)
	require.NoError(t, err)
	return p
}

func TestNewRejectsOptionsThatMakeNoSense(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opt    retry.Option
		option string
	}{
		{"zero attempts", retry.WithMaxAttempts(0), "WithMaxAttempts"},
		{"negative attempts", retry.WithMaxAttempts(-1), "WithMaxAttempts"},
		{"zero base", retry.WithBackoff(0, time.Second), "WithBackoff"},
		{"cap below base", retry.WithBackoff(time.Second, time.Millisecond), "WithBackoff"},
		{"negative attempt timeout", retry.WithAttemptTimeout(-time.Second), "WithAttemptTimeout"},
		{"negative max Retry-After", retry.WithMaxRetryAfter(-1), "WithMaxRetryAfter"},
		{"nil classifier", retry.WithClassifier(nil), "WithClassifier"},
		{"nil backoff func", retry.WithBackOffFunc(nil), "WithBackOffFunc"},
		{"negative budget ratio", retry.WithBudget(-0.1, 1, time.Second), "WithBudget"},
		{"NaN budget ratio", retry.WithBudget(nan(), 1, time.Second), "WithBudget"},
		{"negative budget floor", retry.WithBudget(0.2, -1, time.Second), "WithBudget"},
		{"zero budget window", retry.WithBudget(0.2, 1, 0), "WithBudget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := retry.New(tt.opt)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.ErrorIs(t, err, retry.ErrInvalidOption)
			assert.Contains(t, err.Error(), tt.option)
		})
	}
}

func nan() float64 { var z float64; return z / z }

func TestNewTransportRejectsOptionsThatMakeNoSense(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opt    retry.TransportOption
		option string
	}{
		{"no key header", retry.WithKeyHeaders(), "WithKeyHeaders"},
		{"empty key header", retry.WithKeyHeaders(""), "WithKeyHeaders"},
		{"key header with a colon", retry.WithKeyHeaders("Idempotency-Key:"), "WithKeyHeaders"},
		{"method with a space", retry.WithIdempotentMethods("PU T"), "WithIdempotentMethods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, err := retry.NewTransport(nil, nil, tt.opt)
			require.Error(t, err)
			assert.Nil(t, tr)
			assert.ErrorIs(t, err, retry.ErrInvalidOption)
			assert.Contains(t, err.Error(), tt.option)
		})
	}
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	clk := newAutoClock()
	p := newPolicy(t, clk, retry.WithMaxAttempts(5))
	calls := 0
	v, err := retry.DoValue(context.Background(), p, func(context.Context) (string, error) {
		calls++
		if calls < 3 {
			return "partial", errFlaky
		}
		return "ok", nil
	})
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	assert.Equal(t, 3, calls)
	assert.Len(t, clk.Sleeps(), 2)
}

func TestDoValueReturnsZeroOnError(t *testing.T) {
	t.Parallel()
	p := newPolicy(t, newAutoClock(), retry.WithMaxAttempts(2))
	v, err := retry.DoValue(context.Background(), p, func(context.Context) (int, error) {
		return 42, errFlaky
	})
	require.ErrorIs(t, err, retry.ErrGaveUp)
	assert.Zero(t, v)
}

func TestDoStopsAtErrorsThatMayNotBeRetried(t *testing.T) {
	t.Parallel()
	errBad := errors.New("bad request")
	tests := []struct {
		name string
		opts []retry.Option
		err  error
	}{
		{"permanent", nil, retry.Permanent(errBad)},
		{"permanent deep in the chain", nil, errors.Join(errors.New("context"), retry.Permanent(errBad))},
		{"classifier says no", []retry.Option{retry.WithClassifier(func(err error) bool { return !errors.Is(err, errBad) })}, errBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newAutoClock()
			p := newPolicy(t, clk, tt.opts...)
			calls := 0
			err := p.Do(context.Background(), func(context.Context) error {
				calls++
				return tt.err
			})
			assert.Equal(t, 1, calls)
			assert.ErrorIs(t, err, errBad)
			assert.NotErrorIs(t, err, retry.ErrGaveUp)
			assert.Empty(t, clk.Sleeps())
		})
	}
}

func TestDoGiveUpErrorCarriesAttemptsAndUnwrapsToLastCause(t *testing.T) {
	t.Parallel()
	p := newPolicy(t, newAutoClock(), retry.WithMaxAttempts(3))
	calls := 0
	var last error
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		last = &causeError{n: calls}
		return last
	})
	require.Equal(t, 3, calls)
	assert.ErrorIs(t, err, retry.ErrGaveUp)
	assert.ErrorIs(t, err, retry.ErrAttemptsExhausted)
	var g *retry.GaveUpError
	require.ErrorAs(t, err, &g)
	assert.Equal(t, 3, g.Attempts)
	assert.Equal(t, 0, g.LastStatus)
	assert.Same(t, last, errors.Unwrap(err))
	var ce *causeError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 3, ce.n)
	assert.Contains(t, err.Error(), "3 attempts")
}

type causeError struct{ n int }

func (e *causeError) Error() string { return "cause" }

func TestDoHonoursRetryAfterOfTheError(t *testing.T) {
	t.Parallel()
	t.Run("within the cap sets the wait", func(t *testing.T) {
		t.Parallel()
		clk := newAutoClock()
		p := newPolicy(t, clk, retry.WithMaxRetryAfter(5*time.Second))
		calls := 0
		err := p.Do(context.Background(), func(context.Context) error {
			calls++
			if calls == 1 {
				return retry.After(errFlaky, 3*time.Second)
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{3 * time.Second}, clk.Sleeps())
	})
	t.Run("negative falls back to the backoff", func(t *testing.T) {
		t.Parallel()
		clk := newAutoClock()
		p := newPolicy(t, clk, retry.WithRand(constRand(0.5)), retry.WithBackoff(time.Second, time.Second))
		calls := 0
		err := p.Do(context.Background(), func(context.Context) error {
			calls++
			if calls == 1 {
				return retry.After(errFlaky, -time.Second)
			}
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{500 * time.Millisecond}, clk.Sleeps())
	})
	t.Run("beyond the cap fails at once", func(t *testing.T) {
		t.Parallel()
		clk := newAutoClock()
		p := newPolicy(t, clk, retry.WithMaxRetryAfter(5*time.Second))
		calls := 0
		err := p.Do(context.Background(), func(context.Context) error {
			calls++
			return retry.After(errFlaky, time.Minute)
		})
		assert.Equal(t, 1, calls)
		assert.Empty(t, clk.Sleeps())
		assertRetryAfterError(t, err, time.Minute, 5*time.Second)
		assert.ErrorIs(t, err, errFlaky)
	})
	t.Run("beyond the deadline fails at once", func(t *testing.T) {
		t.Parallel()
		clk := newAutoClock()
		p := newPolicy(t, clk)
		ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(5*time.Second))
		defer cancel()
		calls := 0
		err := p.Do(ctx, func(context.Context) error {
			calls++
			return retry.After(errFlaky, 10*time.Second)
		})
		assert.Equal(t, 1, calls)
		assert.Empty(t, clk.Sleeps())
		var rae *retry.RetryAfterError
		require.ErrorAs(t, err, &rae)
		assert.Equal(t, 10*time.Second, rae.Delay)
		assert.LessOrEqual(t, rae.Limit, 5*time.Second)
	})
}

func assertRetryAfterError(t *testing.T, err error, delay, limit time.Duration) {
	t.Helper()
	assert.ErrorIs(t, err, retry.ErrGaveUp)
	assert.ErrorIs(t, err, retry.ErrRetryAfterTooLong)
	var rae *retry.RetryAfterError
	require.ErrorAs(t, err, &rae)
	assert.Equal(t, delay, rae.Delay)
	assert.Equal(t, limit, rae.Limit)
	d, ok := retry.RetryAfter(err)
	assert.True(t, ok)
	assert.Equal(t, delay, d, "the error speaks the protocol to an outer scheduler")
	var g *retry.GaveUpError
	require.ErrorAs(t, err, &g)
	assert.Equal(t, 1, g.Attempts)
}

type constRand float64

func (r constRand) Float64() float64 { return float64(r) }

func TestDoDoesNotStartAWaitThatEndsAfterTheDeadline(t *testing.T) {
	t.Parallel()
	clk := newAutoClock()
	p := newPolicy(t, clk, retry.WithBackoff(time.Second, time.Second), retry.WithRand(constRand(0.9)))
	ctx, cancel := context.WithDeadline(context.Background(), clk.Now().Add(500*time.Millisecond))
	defer cancel()
	calls := 0
	err := p.Do(ctx, func(context.Context) error { calls++; return errFlaky })
	assert.Equal(t, 1, calls)
	assert.Empty(t, clk.Sleeps())
	assert.ErrorIs(t, err, retry.ErrGaveUp)
	assert.ErrorIs(t, err, retry.ErrDeadlineTooClose)
	assert.ErrorIs(t, err, errFlaky)
}

func TestDoReturnsPromptlyWhenCancelledDuringAWait(t *testing.T) {
	t.Parallel()
	clk := newManualClock()
	p := newPolicy(t, clk, retry.WithBackoff(time.Hour, time.Hour), retry.WithRand(constRand(0.5)))
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- p.Do(ctx, func(context.Context) error { calls.Add(1); return errFlaky })
	}()
	assert.Equal(t, 30*time.Minute, <-clk.waiting, "the loop waits on the clock")
	cancel()
	// The fake timer never fires: only the cancellation can end the wait.
	err := <-done
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, errFlaky, "the last attempt's error is kept")
	assert.NotErrorIs(t, err, retry.ErrGaveUp)
	assert.Equal(t, int32(1), calls.Load(), "no attempt after the cancellation")
}

func TestDoDoesNotCallFnWithADoneContext(t *testing.T) {
	t.Parallel()
	p := newPolicy(t, newAutoClock())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := p.Do(ctx, func(context.Context) error { called = true; return nil })
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, called)
}

func TestDoDoesNotRetryTheCallersCancellation(t *testing.T) {
	t.Parallel()
	clk := newAutoClock()
	p := newPolicy(t, clk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := p.Do(ctx, func(ctx context.Context) error {
		calls++
		cancel()
		return ctx.Err()
	})
	assert.Equal(t, 1, calls)
	assert.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, retry.ErrAttemptTimeout)
	assert.Empty(t, clk.Sleeps())
}

func TestDoRetriesAnAttemptThatTimedOut(t *testing.T) {
	t.Parallel()
	clk := newAutoClock()
	var hookErrs []error
	p := newPolicy(t, clk, retry.WithAttemptTimeout(time.Second), retry.WithMaxAttempts(3),
		retry.WithOnRetry(func(_ context.Context, _ int, err error, _ time.Duration) { hookErrs = append(hookErrs, err) }))
	calls := 0
	err := p.Do(context.Background(), func(ctx context.Context) error {
		calls++
		if calls == 1 {
			clk.Advance(2 * time.Second) // a slow provider
			<-ctx.Done()
			return ctx.Err()
		}
		return ctx.Err()
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
	require.Len(t, hookErrs, 1)
	assert.ErrorIs(t, hookErrs[0], retry.ErrAttemptTimeout, "the error says it was the attempt's timeout")
	assert.ErrorIs(t, hookErrs[0], context.DeadlineExceeded)

	calls = 0
	err = p.Do(context.Background(), func(ctx context.Context) error {
		calls++
		clk.Advance(2 * time.Second)
		return context.Cause(ctx)
	})
	assert.Equal(t, 3, calls)
	assert.ErrorIs(t, err, retry.ErrGaveUp)
	assert.ErrorIs(t, err, retry.ErrAttemptTimeout)
}

func TestDoAttemptTimeoutOnTheSystemClock(t *testing.T) {
	t.Parallel()
	p, err := retry.New(retry.WithAttemptTimeout(time.Millisecond), retry.WithBackoff(time.Nanosecond, time.Nanosecond), retry.WithoutBudget())
	require.NoError(t, err)
	calls := 0
	err = p.Do(context.Background(), func(ctx context.Context) error {
		calls++
		_, hasDeadline := ctx.Deadline()
		assert.True(t, hasDeadline, "lower layers see the attempt's deadline")
		if calls == 1 {
			<-ctx.Done()
			assert.Same(t, retry.ErrAttemptTimeout, context.Cause(ctx))
			return ctx.Err()
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
}

func TestFullJitterStaysWithinBoundsAndIsReproducible(t *testing.T) {
	t.Parallel()
	const base, capd = 10 * time.Millisecond, time.Second
	b1 := &retry.FullJitter{Base: base, Max: capd, Rand: rand.New(rand.NewPCG(1, 2))}
	b2 := &retry.FullJitter{Base: base, Max: capd, Rand: rand.New(rand.NewPCG(1, 2))}
	var seen []time.Duration
	for n := 1; n <= 200; n++ {
		d1, d2 := b1.NextBackOff(), b2.NextBackOff()
		assert.Equal(t, d1, d2, "same seed, same delays")
		ceiling := retry.Ceiling(n, base, capd)
		assert.GreaterOrEqual(t, d1, time.Duration(0))
		assert.Less(t, d1, ceiling, "attempt %d", n)
		assert.LessOrEqual(t, ceiling, capd)
		seen = append(seen, d1)
	}
	assert.Equal(t, 10*time.Millisecond, retry.Ceiling(1, base, capd))
	assert.Equal(t, 80*time.Millisecond, retry.Ceiling(4, base, capd))
	assert.Equal(t, capd, retry.Ceiling(1000, base, capd))
	b1.Reset()
	assert.Less(t, b1.NextBackOff(), base, "Reset starts again")
	assert.Greater(t, len(distinct(seen)), 150, "the delays are random, not constant")
}

func distinct(ds []time.Duration) map[time.Duration]bool {
	m := make(map[time.Duration]bool)
	for _, d := range ds {
		m[d] = true
	}
	return m
}

func TestDelayAgreesWithTheLoop(t *testing.T) {
	t.Parallel()
	const base, capd = 100 * time.Millisecond, 2 * time.Second
	clk := newAutoClock()
	var waits []time.Duration
	p := newPolicy(t, clk, retry.WithMaxAttempts(8), retry.WithBackoff(base, capd),
		retry.WithRand(rand.New(rand.NewPCG(7, 7))),
		retry.WithOnRetry(func(_ context.Context, _ int, _ error, d time.Duration) { waits = append(waits, d) }))
	err := p.Do(context.Background(), func(context.Context) error { return errFlaky })
	require.ErrorIs(t, err, retry.ErrAttemptsExhausted)
	require.Len(t, waits, 7)
	assert.Equal(t, waits, clk.Sleeps(), "the loop waits what it announces")
	src := rand.New(rand.NewPCG(7, 7))
	for i, w := range waits {
		assert.Equal(t, retry.Delay(i+1, base, capd, src), w, "retry %d", i+1)
	}
}

func TestWithBackOffFuncStop(t *testing.T) {
	t.Parallel()
	clk := newAutoClock()
	p := newPolicy(t, clk, retry.WithMaxAttempts(10), retry.WithBackOffFunc(func() backoff.BackOff {
		return backoff.WithMaxRetries(&backoff.ConstantBackOff{Interval: time.Second}, 2)
	}))
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error { calls++; return errFlaky })
	assert.Equal(t, 3, calls)
	assert.ErrorIs(t, err, retry.ErrBackOffStop)
	assert.Equal(t, []time.Duration{time.Second, time.Second}, clk.Sleeps())
}

func TestPolicySharedBy100Goroutines(t *testing.T) {
	t.Parallel()
	clk := newAutoClock()
	var retries atomic.Int64
	p, err := retry.New(retry.WithClock(clk), retry.WithRand(rand.New(rand.NewPCG(1, 1))),
		retry.WithAttemptTimeout(time.Minute), retry.WithBudget(2, 100, time.Minute),
		retry.WithOnRetry(func(context.Context, int, error, time.Duration) { retries.Add(1) }))
	require.NoError(t, err)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for g := range 100 {
		wg.Go(func() {
			for i := range 10 {
				calls := 0
				v, err := retry.DoValue(context.Background(), p, func(context.Context) (int, error) {
					calls++
					if calls <= (g+i)%3 {
						return 0, errFlaky
					}
					return g, nil
				})
				if err != nil {
					failures.Add(1)
					assert.ErrorIs(t, err, retry.ErrGaveUp)
					continue
				}
				assert.Equal(t, g, v)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, failures.Load())
	assert.Positive(t, retries.Load())
}

func TestGaveUpErrorMessage(t *testing.T) {
	t.Parallel()
	g := &retry.GaveUpError{Attempts: 1, LastStatus: 503, Reason: retry.ErrBudgetExhausted, Err: &retry.StatusError{StatusCode: 503}}
	msg := g.Error()
	for _, want := range []string{"1 attempt", "budget", "503 Service Unavailable"} {
		assert.True(t, strings.Contains(msg, want), "%q lacks %q", msg, want)
	}
}

func TestDelayStaysBelowItsCeilingWhateverTheSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rnd  retry.Rand
	}{
		{"zero", constRand(0)},
		{"almost one", constRand(0.9999999999999999)},
		{"one (broken source)", constRand(1)},
		{"above one (broken source)", constRand(7)},
		{"negative (broken source)", constRand(-1)},
		{"NaN (broken source)", constRand(nan())},
		{"global source", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, attempt := range []int{-5, 0, 1, 2, 30, 64, 1 << 40} {
				for _, bounds := range [][2]time.Duration{{time.Millisecond, time.Second}, {time.Second, 1<<63 - 1}, {time.Hour, time.Minute}} {
					c := retry.Ceiling(attempt, bounds[0], bounds[1])
					d := retry.Delay(attempt, bounds[0], bounds[1], tt.rnd)
					assert.GreaterOrEqual(t, d, time.Duration(0))
					assert.Less(t, d, c, "attempt %d, bounds %v", attempt, bounds)
				}
			}
		})
	}
	assert.Equal(t, time.Duration(0), retry.Delay(3, 0, time.Second, constRand(0.5)), "no base, no wait")
}
