package retry_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/retry"
)

var errFlaky = errors.New("flaky")

// newPolicy returns a Policy without a budget, with the options added.
func newPolicy(t *testing.T, opts ...retry.Option) *retry.Policy {
	t.Helper()
	p, err := retry.New(append([]retry.Option{retry.WithoutBudget()}, opts...)...)
	require.NoError(t, err)
	return p
}

func TestNewRejectsOptionsThatMakeNoSense(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opt    retry.Option
		option string // the error begins "retry: New: " + option
	}{
		{"zero attempts", retry.WithMaxAttempts(0), "WithMaxAttempts: attempts 0 must be at least 1"},
		{"negative attempts", retry.WithMaxAttempts(-1), "WithMaxAttempts"},
		{"zero base", retry.WithBackoff(0, time.Second), "WithBackoff: base 0s must be positive"},
		{"cap below base", retry.WithBackoff(time.Second, time.Millisecond), "WithBackoff: max 1ms must be at least base 1s"},
		{"negative attempt timeout", retry.WithAttemptTimeout(-time.Second), "WithAttemptTimeout"},
		{"negative max Retry-After", retry.WithMaxRetryAfter(-1), "WithMaxRetryAfter"},
		{"nil classifier", retry.WithClassifier(nil), "WithClassifier: function is nil"},
		{"nil backoff func", retry.WithBackOffFunc(nil), "WithBackOffFunc: function is nil"},
		{"nil retry hook", retry.WithOnRetry(nil), "WithOnRetry: function is nil"},
		{"nil logger", retry.WithLogger(nil), "WithLogger: logger is nil"},
		{"nil meter provider", retry.WithMeterProvider(nil), "WithMeterProvider: meter provider is nil"},
		{"negative budget ratio", retry.WithBudget(-0.1, 1, time.Second), "WithBudget: ratio -0.1 must be in [0, 1000]"},
		{"NaN budget ratio", retry.WithBudget(nan(), 1, time.Second), "WithBudget"},
		{"negative budget floor", retry.WithBudget(0.2, -1, time.Second), "WithBudget: floor -1"},
		{"zero budget window", retry.WithBudget(0.2, 1, 0), "WithBudget: window 0s"},
		{"nil option", nil, "option 0 is nil"},
		{"an option of NewTransport", retry.WithKeyHeaders("webhook-id"), "WithKeyHeaders applies to NewTransport, not New"},
		{"an option of NewTransport", retry.WithAutoIdempotencyKey(), "WithAutoIdempotencyKey applies to NewTransport, not New"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := retry.New(tt.opt)
			require.Error(t, err)
			assert.Nil(t, p)
			assert.True(t, strings.HasPrefix(err.Error(), "retry: New: "+tt.option), "%q names the option", err)
		})
	}
}

func nan() float64 { var z float64; return z / z }

func TestNewTransportRejectsOptionsThatMakeNoSense(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opt    retry.Option
		option string // the error begins "retry: NewTransport: " + option
	}{
		{"no key header", retry.WithKeyHeaders(), "WithKeyHeaders: at least one header name is required"},
		{"empty key header", retry.WithKeyHeaders(""), "WithKeyHeaders"},
		{"key header with a colon", retry.WithKeyHeaders("Idempotency-Key:"), `WithKeyHeaders: header name "Idempotency-Key:" is not a valid token`},
		{"method with a space", retry.WithIdempotentMethods("PU T"), "WithIdempotentMethods"},
		{"no method", retry.WithIdempotentMethods(), "WithIdempotentMethods: at least one method is required"},
		{"nil option", nil, "option 0 is nil"},
		{"an option of New", retry.WithMaxAttempts(3), "WithMaxAttempts applies to New, not NewTransport"},
	}
	p := newPolicy(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, err := retry.NewTransport(nil, p, tt.opt)
			require.Error(t, err)
			assert.Nil(t, tr)
			assert.True(t, strings.HasPrefix(err.Error(), "retry: NewTransport: "+tt.option), "%q names the option", err)
		})
	}
}

// TestNilArgumentsAreErrors checks that a nil Policy or function is an error
// of the function that got it, never a panic, and that fn is not called.
func TestNilArgumentsAreErrors(t *testing.T) {
	t.Parallel()
	p := newPolicy(t)
	called := false
	fn := func(context.Context) error { called = true; return nil }
	fnv := func(context.Context) (int, error) { called = true; return 1, nil }
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"Do with a nil policy", func() error { return retry.Do(ctx, nil, fn) }, "retry: Do: policy is nil"},
		{"Do with a nil function", func() error { return retry.Do(ctx, p, nil) }, "retry: Do: function is nil"},
		{"DoValue with a nil policy", func() error { _, err := retry.DoValue(ctx, nil, fnv); return err }, "retry: DoValue: policy is nil"},
		{"DoValue with a nil function", func() error {
			_, err := retry.DoValue[int](ctx, p, nil)
			return err
		}, "retry: DoValue: function is nil"},
		{"NewTransport with a nil policy", func() error { _, err := retry.NewTransport(nil, nil); return err }, "retry: NewTransport: policy is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.NotPanics(t, func() { assert.EqualError(t, tt.call(), tt.want) })
		})
	}
	assert.False(t, called)
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		p := newPolicy(t, retry.WithMaxAttempts(5), sl.option())
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
		assert.Len(t, sl.Sleeps(), 2)
		assert.Equal(t, sum(sl.Sleeps()), sl.Elapsed(), "the loop waits what it announces")
	})
}

func TestDoValueReturnsZeroOnError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := newPolicy(t, retry.WithMaxAttempts(2))
		v, err := retry.DoValue(context.Background(), p, func(context.Context) (int, error) {
			return 42, errFlaky
		})
		require.ErrorIs(t, err, retry.ErrGaveUp)
		assert.Zero(t, v)
	})
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
			synctest.Test(t, func(t *testing.T) {
				sl := newSleeps()
				p := newPolicy(t, append(tt.opts, sl.option())...)
				calls := 0
				err := retry.Do(context.Background(), p, func(context.Context) error {
					calls++
					return tt.err
				})
				assert.Equal(t, 1, calls)
				assert.ErrorIs(t, err, errBad)
				assert.NotErrorIs(t, err, retry.ErrGaveUp)
				assert.Empty(t, sl.Sleeps())
				assert.Zero(t, sl.Elapsed())
			})
		})
	}
}

func TestDoGiveUpErrorCarriesAttemptsAndUnwrapsToLastCause(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := newPolicy(t, retry.WithMaxAttempts(3))
		calls := 0
		var last error
		err := retry.Do(context.Background(), p, func(context.Context) error {
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
	})
}

type causeError struct{ n int }

func (e *causeError) Error() string { return "cause" }

func TestDoHonoursRetryAfterOfTheError(t *testing.T) {
	t.Parallel()
	t.Run("within the cap sets the wait", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			sl := newSleeps()
			p := newPolicy(t, retry.WithMaxRetryAfter(5*time.Second), sl.option())
			calls := 0
			err := retry.Do(context.Background(), p, func(context.Context) error {
				calls++
				if calls == 1 {
					return retry.After(errFlaky, 3*time.Second)
				}
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, []time.Duration{3 * time.Second}, sl.Sleeps())
			assert.Equal(t, 3*time.Second, sl.Elapsed())
		})
	})
	t.Run("negative falls back to the backoff", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			sl := newSleeps()
			p := newPolicy(t, retry.WithJitterSource(constRand(0.5)), retry.WithBackoff(time.Second, time.Second), sl.option())
			calls := 0
			err := retry.Do(context.Background(), p, func(context.Context) error {
				calls++
				if calls == 1 {
					return retry.After(errFlaky, -time.Second)
				}
				return nil
			})
			require.NoError(t, err)
			assert.Equal(t, []time.Duration{500 * time.Millisecond}, sl.Sleeps())
			assert.Equal(t, 500*time.Millisecond, sl.Elapsed())
		})
	})
	t.Run("beyond the cap fails at once", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			sl := newSleeps()
			p := newPolicy(t, retry.WithMaxRetryAfter(5*time.Second), sl.option())
			calls := 0
			err := retry.Do(context.Background(), p, func(context.Context) error {
				calls++
				return retry.After(errFlaky, time.Minute)
			})
			assert.Equal(t, 1, calls)
			assert.Empty(t, sl.Sleeps())
			assert.Zero(t, sl.Elapsed())
			assertRetryAfterError(t, err, time.Minute, 5*time.Second)
			assert.ErrorIs(t, err, errFlaky)
		})
	})
	t.Run("beyond the deadline fails at once", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			sl := newSleeps()
			p := newPolicy(t, sl.option())
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(5*time.Second))
			defer cancel()
			calls := 0
			err := retry.Do(ctx, p, func(context.Context) error {
				calls++
				return retry.After(errFlaky, 10*time.Second)
			})
			assert.Equal(t, 1, calls)
			assert.Empty(t, sl.Sleeps())
			assert.Zero(t, sl.Elapsed())
			var rae *retry.RetryAfterError
			require.ErrorAs(t, err, &rae)
			assert.Equal(t, 10*time.Second, rae.Delay)
			assert.LessOrEqual(t, rae.Limit, 5*time.Second)
		})
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

// constRand returns a random source that always draws f.
func constRand(f float64) func() float64 { return func() float64 { return f } }

func TestDoDoesNotStartAWaitThatEndsAfterTheDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		p := newPolicy(t, retry.WithBackoff(time.Second, time.Second), retry.WithJitterSource(constRand(0.9)), sl.option())
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(500*time.Millisecond))
		defer cancel()
		calls := 0
		err := retry.Do(ctx, p, func(context.Context) error { calls++; return errFlaky })
		assert.Equal(t, 1, calls)
		assert.Empty(t, sl.Sleeps())
		assert.Zero(t, sl.Elapsed())
		assert.ErrorIs(t, err, retry.ErrGaveUp)
		assert.ErrorIs(t, err, retry.ErrDeadlineTooClose)
		assert.ErrorIs(t, err, errFlaky)
	})
}

func TestDoReturnsPromptlyWhenCancelledDuringAWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		p := newPolicy(t, retry.WithBackoff(time.Hour, time.Hour), retry.WithJitterSource(constRand(0.5)), sl.option())
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int32
		done := make(chan error, 1)
		go func() {
			done <- retry.Do(ctx, p, func(context.Context) error { calls.Add(1); return errFlaky })
		}()
		synctest.Wait() // the loop waits on its timer
		assert.Equal(t, []time.Duration{30 * time.Minute}, sl.Sleeps(), "the loop waits")
		cancel()
		// Time stands still while the test runs: only the cancellation can
		// end the wait.
		err := <-done
		assert.Zero(t, sl.Elapsed(), "the wait ended before its timer")
		assert.ErrorIs(t, err, context.Canceled)
		assert.ErrorIs(t, err, errFlaky, "the last attempt's error is kept")
		assert.NotErrorIs(t, err, retry.ErrGaveUp)
		assert.Equal(t, int32(1), calls.Load(), "no attempt after the cancellation")
	})
}

func TestDoDoesNotCallFnWithADoneContext(t *testing.T) {
	t.Parallel()
	p := newPolicy(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := retry.Do(ctx, p, func(context.Context) error { called = true; return nil })
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, called)
}

func TestDoDoesNotRetryTheCallersCancellation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		p := newPolicy(t, sl.option())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		err := retry.Do(ctx, p, func(ctx context.Context) error {
			calls++
			cancel()
			return ctx.Err()
		})
		assert.Equal(t, 1, calls)
		assert.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, retry.ErrAttemptTimeout)
		assert.Empty(t, sl.Sleeps())
		assert.Zero(t, sl.Elapsed())
	})
}

func TestDoRetriesAnAttemptThatTimedOut(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var hookErrs []error
		p := newPolicy(t, retry.WithAttemptTimeout(time.Second), retry.WithMaxAttempts(3),
			retry.WithOnRetry(func(_ context.Context, _ int, err error, _ time.Duration) { hookErrs = append(hookErrs, err) }))
		calls := 0
		err := retry.Do(context.Background(), p, func(ctx context.Context) error {
			calls++
			if calls == 1 {
				<-ctx.Done() // a slow provider, cut off by the attempt's timeout
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
		err = retry.Do(context.Background(), p, func(ctx context.Context) error {
			calls++
			time.Sleep(2 * time.Second)
			return context.Cause(ctx)
		})
		assert.Equal(t, 3, calls)
		assert.ErrorIs(t, err, retry.ErrGaveUp)
		assert.ErrorIs(t, err, retry.ErrAttemptTimeout)
	})
}

func TestDoAttemptTimeoutOnTheSystemClock(t *testing.T) {
	t.Parallel()
	p, err := retry.New(retry.WithAttemptTimeout(time.Millisecond), retry.WithBackoff(time.Nanosecond, time.Nanosecond), retry.WithoutBudget())
	require.NoError(t, err)
	calls := 0
	err = retry.Do(context.Background(), p, func(ctx context.Context) error {
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
	b1 := retry.NewFullJitter(base, capd, rand.New(rand.NewPCG(1, 2)).Float64)
	b2 := retry.NewFullJitter(base, capd, rand.New(rand.NewPCG(1, 2)).Float64)
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
	synctest.Test(t, func(t *testing.T) {
		const base, capd = 100 * time.Millisecond, 2 * time.Second
		start := time.Now()
		var waits []time.Duration
		p := newPolicy(t, retry.WithMaxAttempts(8), retry.WithBackoff(base, capd),
			retry.WithJitterSource(rand.New(rand.NewPCG(7, 7)).Float64),
			retry.WithOnRetry(func(_ context.Context, _ int, _ error, d time.Duration) { waits = append(waits, d) }))
		err := retry.Do(context.Background(), p, func(context.Context) error { return errFlaky })
		require.ErrorIs(t, err, retry.ErrAttemptsExhausted)
		require.Len(t, waits, 7)
		assert.Equal(t, sum(waits), time.Since(start), "the loop waits what it announces")
		src := rand.New(rand.NewPCG(7, 7))
		for i, w := range waits {
			assert.Equal(t, retry.DelayFrom(i+1, base, capd, src.Float64), w, "retry %d", i+1)
		}
	})
}

func TestWithBackOffFuncStop(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		p := newPolicy(t, retry.WithMaxAttempts(10), sl.option(), retry.WithBackOffFunc(func() backoff.BackOff {
			return backoff.WithMaxRetries(&backoff.ConstantBackOff{Interval: time.Second}, 2)
		}))
		calls := 0
		err := retry.Do(context.Background(), p, func(context.Context) error { calls++; return errFlaky })
		assert.Equal(t, 3, calls)
		assert.ErrorIs(t, err, retry.ErrBackOffStop)
		assert.Equal(t, []time.Duration{time.Second, time.Second}, sl.Sleeps())
		assert.Equal(t, 2*time.Second, sl.Elapsed())
	})
}

func TestPolicySharedBy100Goroutines(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var retries atomic.Int64
		p, err := retry.New(retry.WithJitterSource(rand.New(rand.NewPCG(1, 1)).Float64),
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
	})
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
		rnd  func() float64
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
					var d time.Duration
					if tt.rnd == nil {
						d = retry.Delay(attempt, bounds[0], bounds[1])
					} else {
						d = retry.DelayFrom(attempt, bounds[0], bounds[1], tt.rnd)
					}
					assert.GreaterOrEqual(t, d, time.Duration(0))
					assert.Less(t, d, c, "attempt %d, bounds %v", attempt, bounds)
				}
			}
		})
	}
	assert.Equal(t, time.Duration(0), retry.DelayFrom(3, 0, time.Second, constRand(0.5)), "no base, no wait")
	assert.Equal(t, time.Duration(0), retry.Delay(3, 0, time.Second), "no base, no wait")
}
