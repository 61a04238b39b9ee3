package retry

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/metric"
)

// Defaults of a Policy made by New without options.
const (
	// DefaultMaxAttempts is the number of attempts, the first included.
	DefaultMaxAttempts = 4
	// DefaultBase is the ceiling of the first backoff wait.
	DefaultBase = 100 * time.Millisecond
	// DefaultMax caps every backoff wait.
	DefaultMax = 10 * time.Second
	// DefaultMaxRetryAfter is the longest Retry-After a Policy waits for.
	DefaultMaxRetryAfter = 30 * time.Second
	// DefaultBudgetRatio is the fraction of recent requests that may be
	// retried.
	DefaultBudgetRatio = 0.2
	// DefaultBudgetFloor is the number of retries per window that are always
	// allowed, so that a client with little traffic can still retry.
	DefaultBudgetFloor = 10
	// DefaultBudgetWindow is the length of the sliding window the budget
	// counts requests and retries over.
	DefaultBudgetWindow = 10 * time.Second
)

// Option configures a Policy. Options are applied in order; New reports the
// first one that makes no sense.
type Option func(*config) error

type config struct {
	maxAttempts    int
	base, max      time.Duration
	newBackOff     func() backoff.BackOff
	attemptTimeout time.Duration
	classifier     func(error) bool
	maxRetryAfter  time.Duration
	onRetry        func(ctx context.Context, attempt int, err error, wait time.Duration)
	clock          Clock
	rand           Rand
	logger         *slog.Logger
	meterProvider  metric.MeterProvider
	budget         bool
	budgetRatio    float64
	budgetFloor    int
	budgetWindow   time.Duration
	name           string
}

func invalid(option, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, option, fmt.Sprintf(format, args...))
}

// WithMaxAttempts sets the number of attempts, the first included: 1 means
// no retry. It must be at least 1. Defaults to DefaultMaxAttempts (4).
func WithMaxAttempts(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return invalid("WithMaxAttempts", "attempts must be at least 1, got %d", n)
		}
		c.maxAttempts = n
		return nil
	}
}

// WithBackoff sets the capped exponential backoff with full jitter: the wait
// before retry n is uniformly random in [0, min(max, base·2^(n-1))), exactly
// Delay(n, base, max, rnd). base must be positive and max at least base.
// Defaults to DefaultBase (100 ms) and DefaultMax (10 s).
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) error {
		if base <= 0 {
			return invalid("WithBackoff", "base must be positive, got %v", base)
		}
		if max < base {
			return invalid("WithBackoff", "max %v is below base %v", max, base)
		}
		c.base, c.max = base, max
		c.newBackOff = nil
		return nil
	}
}

// WithBackOffFunc replaces the full-jitter backoff by any backoff/v4 BackOff.
// newBackOff is called once per call that fails, for a fresh state; the
// BackOff it returns is used by that call only. backoff.Stop ends the call
// with a *GaveUpError whose Reason is ErrBackOffStop. It must not be nil.
// Defaults to a FullJitter with the WithBackoff settings and WithRand source.
func WithBackOffFunc(newBackOff func() backoff.BackOff) Option {
	return func(c *config) error {
		if newBackOff == nil {
			return invalid("WithBackOffFunc", "nil function")
		}
		c.newBackOff = newBackOff
		return nil
	}
}

// WithAttemptTimeout bounds each attempt: its context is cancelled with cause
// ErrAttemptTimeout (set with context.WithTimeoutCause) after d, and the
// attempt's error then matches ErrAttemptTimeout. A timed-out attempt is
// retried while the caller's context lives. d must not be negative; 0 means
// no per-attempt timeout. Defaults to 0: only the caller's context bounds the
// attempts.
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("WithAttemptTimeout", "negative timeout %v", d)
		}
		c.attemptTimeout = d
		return nil
	}
}

// WithClassifier sets the function that decides whether a failed attempt of
// Do may be retried. It is consulted after the error protocol: an error marked
// Permanent is never retried and an attempt that hit the per-attempt timeout
// always is, whatever the classifier says. It must be safe for concurrent
// use and must not be nil. The Transport does not use it: HTTP outcomes follow
// fixed rules. Defaults to retrying every other error.
func WithClassifier(retryable func(err error) bool) Option {
	return func(c *config) error {
		if retryable == nil {
			return invalid("WithClassifier", "nil function")
		}
		c.classifier = retryable
		return nil
	}
}

// WithMaxRetryAfter sets the longest delay a failure may ask for (an HTTP
// Retry-After, or an error's RetryAfter method) and still be waited for; a
// longer one ends the call at once with a *RetryAfterError. d must not be
// negative. Defaults to DefaultMaxRetryAfter (30 s).
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return invalid("WithMaxRetryAfter", "negative duration %v", d)
		}
		c.maxRetryAfter = d
		return nil
	}
}

// WithOnRetry sets a hook called before each wait, with the number of the
// attempt that failed (1 for the first), its error (a *StatusError for a
// retryable HTTP response) and the wait that follows. It runs on the calling
// goroutine, so it must be quick, and concurrently for concurrent calls.
// Defaults to none.
func WithOnRetry(fn func(ctx context.Context, attempt int, err error, wait time.Duration)) Option {
	return func(c *config) error {
		c.onRetry = fn
		return nil
	}
}

// WithClock sets the clock of the waits, of the per-attempt timeout, of the
// deadline check and of the retry budget. It must be safe for concurrent use.
// With a clock other than the system clock the attempt's context is
// cancelled by that clock's timer, carries no deadline of its own and
// reports context.Canceled from Err; its cause is still ErrAttemptTimeout.
// Defaults to the system clock; nil restores it.
func WithClock(clk Clock) Option {
	return func(c *config) error {
		if _, ok := clk.(systemClock); ok {
			clk = nil
		}
		c.clock = clk
		return nil
	}
}

// WithRand sets the random source of the jitter. The Policy serialises its
// calls, so a *math/rand/v2.Rand, which is not safe for concurrent use, can be
// given; a seeded one makes the waits reproducible. Defaults to the global
// source of math/rand/v2; nil restores it.
func WithRand(r Rand) Option {
	return func(c *config) error {
		c.rand = r
		return nil
	}
}

// WithLogger sets the logger. The Policy logs retries and give-ups at Debug
// level, and that the retry budget refuses retries at Warn, at most once per
// budget window; nothing is logged per call above Debug. Defaults to slog.Default() at
// the time of each log; nil restores it.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counters
// steadfast.retry.attempts, .retries, .give_ups (with attribute
// steadfast.retry.reason) and .budget_refusals. Defaults to
// otel.GetMeterProvider(); nil restores it.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		c.meterProvider = mp
		return nil
	}
}

// WithBudget sets the retry budget: over a sliding window of the given
// length, a retry is allowed while the retries of the window, this one
// included, number at most ratio × the requests (first attempts) of the window
// plus floor. A refused retry ends the call with a *GaveUpError whose Reason is
// ErrBudgetExhausted. This is the sliding-window form of the budgets of
// Finagle and Envoy: under a total outage, retries stay under a fixed fraction
// of the requests, so retrying clients do not multiply the load on a service
// that is down. Do shares one budget among all calls of the Policy; a
// Transport keeps one per host. ratio must be in [0, 1000], floor not
// negative and window positive. Defaults to DefaultBudgetRatio (0.2),
// DefaultBudgetFloor (10) and DefaultBudgetWindow (10 s).
func WithBudget(ratio float64, floor int, window time.Duration) Option {
	return func(c *config) error {
		if !(ratio >= 0 && ratio <= 1000) || math.IsNaN(ratio) {
			return invalid("WithBudget", "ratio must be in [0, 1000], got %v", ratio)
		}
		if floor < 0 {
			return invalid("WithBudget", "negative floor %d", floor)
		}
		if window <= 0 {
			return invalid("WithBudget", "window must be positive, got %v", window)
		}
		c.budget = true
		c.budgetRatio, c.budgetFloor, c.budgetWindow = ratio, floor, window
		return nil
	}
}

// WithoutBudget removes the retry budget: every call may use all its
// attempts. The default is a budget (see WithBudget).
func WithoutBudget() Option {
	return func(c *config) error {
		c.budget = false
		return nil
	}
}

// WithName names the Policy in its logs and in the attribute
// steadfast.retry.policy of its metrics, so that the policies of several
// dependencies can be told apart. Defaults to no name.
func WithName(name string) Option {
	return func(c *config) error {
		c.name = name
		return nil
	}
}
