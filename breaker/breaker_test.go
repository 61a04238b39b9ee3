package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/retry"
)

var errBoom = errors.New("boom")

func newBreaker(t *testing.T, opts ...breaker.Option) *breaker.Breaker {
	t.Helper()
	b, err := breaker.New(t.Name(), append([]breaker.Option{breaker.WithLogger(quiet)}, opts...)...)
	require.NoError(t, err)
	return b
}

func call(b *breaker.Breaker, err error) error {
	_, e := breaker.Execute(context.Background(), b, func(context.Context) (struct{}, error) { return struct{}{}, err })
	return e
}

// waitHalfOpen waits for an open circuit to let probes through. gobreaker
// reads time.Now, so inside a testing/synctest bubble the wait takes no real
// time.
func waitHalfOpen(t *testing.T, b *breaker.Breaker) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.State() == breaker.Open {
		if time.Now().After(deadline) {
			t.Fatal("circuit still open after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	require.Equal(t, breaker.HalfOpen, b.State())
}

func TestOpensOnlyWhenRatioAndMinCallsAreMet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		opts                []breaker.Option
		successes, failures int
		wantOpen            bool
	}{
		{"all failures below min calls", []breaker.Option{breaker.WithFailureRatio(0.5, 10)}, 0, 9, false},
		{"min calls met, ratio not met", []breaker.Option{breaker.WithFailureRatio(0.5, 10)}, 6, 4, false},
		{"min calls and ratio met", []breaker.Option{breaker.WithFailureRatio(0.5, 10)}, 5, 5, true},
		{"ratio 1 needs every call to fail", []breaker.Option{breaker.WithFailureRatio(1, 4)}, 1, 3, false},
		{"ratio 1 met", []breaker.Option{breaker.WithFailureRatio(1, 4)}, 0, 4, true},
		{"defaults: 19 failures are not enough calls", nil, 0, 19, false},
		{"defaults: 20 failures", nil, 0, 20, true},
		{"consecutive failures not reached", []breaker.Option{breaker.WithConsecutiveFailures(3)}, 0, 2, false},
		{"consecutive failures reached", []breaker.Option{breaker.WithConsecutiveFailures(3)}, 0, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBreaker(t, append(tt.opts, breaker.WithOpenDuration(time.Hour))...)
			for range tt.successes {
				require.NoError(t, call(b, nil))
			}
			for i := range tt.failures {
				require.ErrorIs(t, call(b, errBoom), errBoom, "failure %d", i)
			}
			if !tt.wantOpen {
				assert.Equal(t, breaker.Closed, b.State())
				assert.Zero(t, b.Remaining())
				return
			}
			assert.Equal(t, breaker.Open, b.State())
			var called atomic.Int32
			_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
				called.Add(1)
				return 1, nil
			})
			assert.Zero(t, called.Load(), "the function ran while the circuit was open")
			require.ErrorIs(t, err, breaker.ErrOpen)
			var oe *breaker.OpenError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, t.Name(), oe.Name)
			assert.False(t, oe.Shared)
			// The remaining open time is exposed three ways, all within the hour.
			d, ok := retry.RetryAfter(err)
			require.True(t, ok, "ErrOpen does not speak the error protocol")
			for _, got := range []time.Duration{d, oe.RetryAfter(), b.Remaining()} {
				assert.Greater(t, got, 59*time.Minute)
				assert.LessOrEqual(t, got, time.Hour)
			}
		})
	}
}

func TestRollingWindowForgetsOldFailures(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// 4 failures, then the window (1s in 2 buckets) passes, then 4 more:
		// never 5 in one window. The last five calls take no time at all.
		b := newBreaker(t, breaker.WithFailureRatio(1, 5), breaker.WithWindow(time.Second, 2))
		for range 4 {
			call(b, errBoom)
		}
		time.Sleep(1100 * time.Millisecond)
		for range 4 {
			call(b, errBoom)
		}
		assert.Equal(t, breaker.Closed, b.State())
		call(b, errBoom)
		assert.Equal(t, breaker.Open, b.State())
	})
}

func TestHalfOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		probeErrs []error
		want      breaker.State
	}{
		{"closes when every probe succeeds", []error{nil, nil}, breaker.Closed},
		{"re-opens on one failure", []error{nil, errBoom}, breaker.Open},
		{"re-opens on the first failure", []error{errBoom, nil}, breaker.Open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { testHalfOpen(t, tt.probeErrs, tt.want) })
		})
	}
}

func testHalfOpen(t *testing.T, probeErrs []error, want breaker.State) {
	const probes = 2
	b := newBreaker(t, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(20*time.Millisecond),
		breaker.WithHalfOpenProbes(probes))
	call(b, errBoom)
	require.Equal(t, breaker.Open, b.State())
	waitHalfOpen(t, b)

	// probes calls are let through and held inside; the next is rejected.
	release := make([]chan struct{}, probes)
	results := make(chan error, probes)
	var inside sync.WaitGroup
	for i := range probes {
		release[i] = make(chan struct{})
		inside.Add(1)
		go func() {
			_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
				inside.Done()
				<-release[i]
				return 0, probeErrs[i]
			})
			results <- err
		}()
	}
	inside.Wait()
	var called atomic.Bool
	_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
		called.Store(true)
		return 0, nil
	})
	require.ErrorIs(t, err, breaker.ErrProbeLimit)
	require.ErrorIs(t, err, breaker.ErrOpen)
	assert.False(t, called.Load(), "a probe beyond the limit ran")
	for i := range probes {
		close(release[i])
		<-results
	}
	assert.Equal(t, want, b.State())
}

func TestStaleResultDoesNotCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		lateErr error
	}{
		{"a late failure does not re-open", errBoom},
		{"a late success does not close", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := newBreaker(t, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(20*time.Millisecond))
				started, finish := make(chan struct{}), make(chan struct{})
				done := make(chan error)
				go func() {
					_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
						close(started)
						<-finish
						return 0, tt.lateErr
					})
					done <- err
				}()
				<-started // the slow call started while closed
				call(b, errBoom)
				require.Equal(t, breaker.Open, b.State())
				waitHalfOpen(t, b)
				close(finish)
				<-done
				assert.Equal(t, breaker.HalfOpen, b.State(), "a result from before the state change counted")
			})
		})
	}
}

func TestCancellationAndTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		run     func(b *breaker.Breaker) error
		counted bool
	}{
		{"caller cancelled before the call returned", func(b *breaker.Breaker) error {
			ctx, cancel := context.WithCancel(context.Background())
			_, err := breaker.Execute(ctx, b, func(ctx context.Context) (int, error) {
				cancel()
				return 0, fmt.Errorf("read: connection reset (%w)", errBoom)
			})
			return err
		}, false},
		{"context.Canceled returned", func(b *breaker.Breaker) error {
			return call(b, fmt.Errorf("wrapped: %w", context.Canceled))
		}, false},
		{"per-attempt timeout", func(b *breaker.Breaker) error {
			ctx, cancel := context.WithTimeoutCause(context.Background(), time.Millisecond, errors.New("attempt timeout"))
			defer cancel()
			_, err := breaker.Execute(ctx, b, func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			})
			return err
		}, true},
		{"error", func(b *breaker.Breaker) error { return call(b, errBoom) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBreaker(t, breaker.WithConsecutiveFailures(3), breaker.WithOpenDuration(time.Hour))
			for range 3 {
				require.Error(t, tt.run(b))
			}
			want := breaker.Closed
			if tt.counted {
				want = breaker.Open
			}
			assert.Equal(t, want, b.State())
		})
	}
}

func TestClassifier(t *testing.T) {
	t.Parallel()
	errNotFound := errors.New("not found")
	errFlaky := errors.New("flaky")
	b := newBreaker(t, breaker.WithConsecutiveFailures(2), breaker.WithOpenDuration(time.Hour),
		breaker.WithClassifier(func(ctx context.Context, err error) breaker.Outcome {
			switch {
			case err == nil, errors.Is(err, errNotFound):
				return breaker.Success
			case errors.Is(err, errFlaky):
				return breaker.Ignore
			case errors.Is(err, context.Canceled):
				t.Error("the classifier was asked about a cancellation")
			}
			return breaker.Failure
		}))
	for _, err := range []error{errNotFound, errNotFound, errFlaky, errFlaky, context.Canceled, context.Canceled} {
		call(b, err)
	}
	require.Equal(t, breaker.Closed, b.State())
	call(b, errBoom)
	call(b, errFlaky) // ignored: does not break the run of failures
	call(b, errBoom)
	assert.Equal(t, breaker.Open, b.State())
}

func TestHookMayCallBackIntoBreaker(t *testing.T) {
	t.Parallel()
	var (
		b       *breaker.Breaker
		mu      sync.Mutex
		seen    []string
		lastErr error
	)
	hook := func(tr breaker.Transition) {
		// All of these take gobreaker's mutex: they would deadlock if the
		// hook ran under it.
		s := b.State()
		r := b.Remaining()
		_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) { return 0, nil })
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%v->%v state=%v open=%v", tr.From, tr.To, s, r > 0))
		lastErr = err
	}
	var err error
	b, err = breaker.New("hooked", breaker.WithLogger(quiet), breaker.WithConsecutiveFailures(1),
		breaker.WithOpenDuration(20*time.Millisecond), breaker.WithStateHook(hook))
	require.NoError(t, err)

	done := make(chan struct{})
	go func() {
		defer close(done)
		call(b, errBoom)
		for b.State() == breaker.Open { // the hook's own Execute may probe and close it at once
			time.Sleep(time.Millisecond)
		}
		call(b, nil)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("deadlock: a hook calling back into the breaker never returned")
	}
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(seen), 3)
	assert.Equal(t, "closed->open state=open open=true", seen[0])
	assert.True(t, strings.HasPrefix(seen[1], "open->half-open"), seen[1])
	assert.True(t, strings.HasPrefix(seen[2], "half-open->closed"), seen[2])
	assert.NoError(t, lastErr)
}

func TestHooksRunInOrderOneAtATime(t *testing.T) {
	t.Parallel()
	var (
		active atomic.Int32
		mu     sync.Mutex
		got    []breaker.Transition
	)
	b := newBreaker(t, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Millisecond),
		breaker.WithStateHook(func(tr breaker.Transition) {
			if active.Add(1) != 1 {
				t.Error("two hooks of one breaker ran at once")
			}
			mu.Lock()
			got = append(got, tr)
			mu.Unlock()
			active.Add(-1)
		}))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 200 {
				if (i+j)%3 == 0 {
					call(b, errBoom)
				} else {
					call(b, nil)
				}
			}
		})
	}
	wg.Wait()
	b.State()
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, got)
	assert.Equal(t, breaker.Closed, got[0].From)
	for i := 1; i < len(got); i++ {
		assert.Equal(t, got[i-1].To, got[i].From, "transition %d out of order", i)
	}
}

func TestFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		open         bool
		fnErr        error
		cancel       bool
		wantFallback bool
		wantErr      error
	}{
		{"success", false, nil, false, false, nil},
		{"failure", false, errBoom, false, true, nil},
		{"open", true, nil, false, true, nil},
		{"caller cancel", false, errBoom, true, false, errBoom},
		{"caller cancel returning Canceled", false, context.Canceled, true, false, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBreaker(t, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour))
			if tt.open {
				call(b, errBoom)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var fbErr error
			got, err := breaker.ExecuteWithFallback(ctx, b,
				func(context.Context) (string, error) {
					if tt.cancel {
						cancel()
					}
					if tt.fnErr != nil {
						return "", tt.fnErr
					}
					return "live", nil
				},
				func(_ context.Context, err error) (string, error) {
					fbErr = err
					return "cached", nil
				})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			if !tt.wantFallback {
				assert.NoError(t, fbErr)
				if tt.wantErr == nil {
					assert.Equal(t, "live", got)
				}
				assert.NotEqual(t, "cached", got, "fallback ran")
				return
			}
			assert.Equal(t, "cached", got)
			if tt.open {
				assert.ErrorIs(t, fbErr, breaker.ErrOpen)
			} else {
				assert.ErrorIs(t, fbErr, tt.fnErr)
			}
		})
	}
}

func TestBulkhead(t *testing.T) {
	// Not parallel: goleak checks that no goroutine is left behind.
	const limit = 2
	tests := []struct {
		name    string
		wait    time.Duration
		free    bool // a slot frees while the extra call waits
		cancel  bool // the caller gives up while waiting
		wantErr error
	}{
		{"no wait: fails at once", 0, false, false, breaker.ErrBulkheadFull},
		{"bounded wait runs out", 20 * time.Millisecond, false, false, breaker.ErrBulkheadFull},
		{"waits for a slot", time.Minute, true, false, nil},
		{"caller cancels while waiting", time.Minute, false, true, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleakVerifyNone(t)
			b := newBreaker(t, breaker.WithBulkhead(limit, tt.wait))
			hold := make(chan struct{})
			var inside, holders sync.WaitGroup
			for range limit {
				inside.Add(1)
				holders.Go(func() {
					breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
						inside.Done()
						<-hold
						return 0, nil
					})
				})
			}
			inside.Wait()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var ran atomic.Bool
			done := make(chan error, 1)
			go func() {
				_, err := breaker.Execute(ctx, b, func(context.Context) (int, error) { ran.Store(true); return 0, nil })
				done <- err
			}()
			switch {
			case tt.free:
				select {
				case err := <-done:
					t.Fatalf("the extra call returned (%v) while every slot was taken", err)
				case <-time.After(20 * time.Millisecond):
				}
				hold <- struct{}{} // one holder leaves
			case tt.cancel:
				cancel()
			}
			err := <-done
			close(hold)
			holders.Wait()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.False(t, ran.Load())
			} else {
				require.NoError(t, err)
				assert.True(t, ran.Load())
			}
			// A rejected call is not counted: the circuit stays closed and
			// every slot is free again.
			assert.Equal(t, breaker.Closed, b.State())
			for range limit {
				require.NoError(t, call(b, nil))
			}
		})
	}
}

func TestConcurrentCallsOneBreaker(t *testing.T) {
	t.Parallel()
	var transitions atomic.Int32
	b := newBreaker(t, breaker.WithFailureRatio(0.5, 10), breaker.WithWindow(50*time.Millisecond, 5),
		breaker.WithOpenDuration(time.Millisecond), breaker.WithHalfOpenProbes(3), breaker.WithBulkhead(50, time.Millisecond),
		breaker.WithStateHook(func(breaker.Transition) { transitions.Add(1) }))
	var ran, rejected, other atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			for j := range 200 {
				_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
					ran.Add(1)
					if (i+j)%2 == 0 {
						return 0, errBoom
					}
					return 1, nil
				})
				switch {
				case errors.Is(err, breaker.ErrOpen), errors.Is(err, breaker.ErrBulkheadFull):
					rejected.Add(1)
				case err == nil, errors.Is(err, errBoom):
				default:
					other.Add(1)
				}
				_ = b.State()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(100*200), ran.Load()+rejected.Load())
	assert.Zero(t, other.Load())
	assert.NotZero(t, transitions.Load(), "half the calls failed but the circuit never moved")
}

func TestNewRejectsNonsense(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opt  breaker.Option
		name string
	}{
		{breaker.WithFailureRatio(1.5, 10), "WithFailureRatio: ratio 1.5"},
		{breaker.WithFailureRatio(0, 10), "WithFailureRatio: ratio 0"},
		{breaker.WithFailureRatio(0.5, 0), "WithFailureRatio: minCalls 0"},
		{breaker.WithConsecutiveFailures(0), "WithConsecutiveFailures"},
		{breaker.WithWindow(0, 10), "WithWindow: window 0s"},
		{breaker.WithWindow(time.Second, 0), "WithWindow: buckets 0"},
		{breaker.WithWindow(time.Millisecond, 10), "WithWindow: bucket"},
		{breaker.WithOpenDuration(-time.Second), "WithOpenDuration: duration -1s"},
		{breaker.WithOpenDuration(0), "WithOpenDuration"},
		{breaker.WithHalfOpenProbes(0), "WithHalfOpenProbes"},
		{breaker.WithBulkhead(0, time.Second), "WithBulkhead: limit 0"},
		{breaker.WithBulkhead(1, -time.Second), "WithBulkhead: wait -1s"},
		{breaker.WithClassifier(nil), "WithClassifier"},
		{breaker.WithStateHook(nil), "WithStateHook"},
		{breaker.WithSync(nil), "WithSync"},
		{breaker.WithLogger(nil), "WithLogger: logger is nil"},
		{breaker.WithMeterProvider(nil), "WithMeterProvider: meter provider is nil"},
		{nil, "option 0 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := breaker.New("x", tt.opt)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Contains(t, err.Error(), tt.name)
			assert.True(t, strings.HasPrefix(err.Error(), "breaker: New: "+tt.name), "%q names the constructor and the option", err)
			_, err = breaker.NewGroup(tt.opt)
			assert.ErrorContains(t, err, tt.name)
			assert.True(t, strings.HasPrefix(err.Error(), "breaker: NewGroup: "+tt.name), "%q", err)
			_, err = breaker.NewTransport(nil, tt.opt)
			assert.ErrorContains(t, err, tt.name)
			assert.True(t, strings.HasPrefix(err.Error(), "breaker: NewTransport: "+tt.name), "%q", err)
		})
	}
	_, err := breaker.NewGroup(breaker.WithMaxBreakers(0))
	assert.ErrorContains(t, err, "WithMaxBreakers")
	// Each constructor reports the first option at fault.
	_, err = breaker.NewTransport(nil, breaker.WithKeyFunc(nil))
	assert.ErrorContains(t, err, "WithKeyFunc")
	_, err = breaker.NewTransport(nil, breaker.WithFallback(nil))
	assert.ErrorContains(t, err, "WithFallback")
}

// TestOptionsApplyToTheirConstructors checks that an option of a Group or a
// Transport given to a constructor it does not apply to is refused, naming
// both.
func TestOptionsApplyToTheirConstructors(t *testing.T) {
	t.Parallel()
	fallback := func(*http.Request, error) (*http.Response, error) { return nil, nil }
	tests := []struct {
		name string
		make func() error
		want string
	}{
		{"WithMaxBreakers to New", func() error { _, err := breaker.New("x", breaker.WithMaxBreakers(2)); return err },
			"breaker: New: WithMaxBreakers applies to NewGroup and NewTransport, not New"},
		{"WithKeyFunc to New", func() error {
			_, err := breaker.New("x", breaker.WithKeyFunc(func(*http.Request) string { return "" }))
			return err
		}, "breaker: New: WithKeyFunc applies to NewTransport, not New"},
		{"WithFallback to NewGroup", func() error { _, err := breaker.NewGroup(breaker.WithFallback(fallback)); return err },
			"breaker: NewGroup: WithFallback applies to NewTransport, not NewGroup"},
		{"WithMaxBreakers to NewGroup", func() error { _, err := breaker.NewGroup(breaker.WithMaxBreakers(2)); return err }, ""},
		{"every option to NewTransport", func() error {
			_, err := breaker.NewTransport(nil, breaker.WithMaxBreakers(2), breaker.WithFallback(fallback),
				breaker.WithKeyFunc(func(*http.Request) string { return "" }), breaker.WithLogger(quiet))
			return err
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.make()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, tt.want)
		})
	}
}

// TestNilArgumentsAreErrors checks that a nil breaker, function or fallback
// is an error of the function that got it, never a panic, and that nothing
// is called.
func TestNilArgumentsAreErrors(t *testing.T) {
	t.Parallel()
	b := newBreaker(t)
	called := false
	fn := func(context.Context) (int, error) { called = true; return 1, nil }
	fallback := func(context.Context, error) (int, error) { called = true; return 2, nil }
	ctx := context.Background()
	tests := []struct {
		name string
		call func() (int, error)
		want string
	}{
		{"Execute with a nil breaker", func() (int, error) { return breaker.Execute(ctx, nil, fn) }, "breaker: Execute: breaker is nil"},
		{"Execute with a nil function", func() (int, error) { return breaker.Execute[int](ctx, b, nil) }, "breaker: Execute: function is nil"},
		{"ExecuteWithFallback with a nil breaker", func() (int, error) { return breaker.ExecuteWithFallback(ctx, nil, fn, fallback) },
			"breaker: ExecuteWithFallback: breaker is nil"},
		{"ExecuteWithFallback with a nil function", func() (int, error) { return breaker.ExecuteWithFallback(ctx, b, nil, fallback) },
			"breaker: ExecuteWithFallback: function is nil"},
		{"ExecuteWithFallback with a nil fallback", func() (int, error) { return breaker.ExecuteWithFallback(ctx, b, fn, nil) },
			"breaker: ExecuteWithFallback: fallback is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.NotPanics(t, func() {
				v, err := tt.call()
				assert.EqualError(t, err, tt.want)
				assert.Zero(t, v)
			})
		})
	}
	assert.False(t, called)
	assert.Equal(t, breaker.Closed, b.State(), "nothing was counted")
}
