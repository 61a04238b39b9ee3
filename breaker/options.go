package breaker

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Defaults of the options.
const (
	DefaultFailureRatio   = 0.5
	DefaultMinCalls       = 20
	DefaultWindow         = 10 * time.Second
	DefaultBuckets        = 10
	DefaultOpenDuration   = 30 * time.Second
	DefaultHalfOpenProbes = 1
	DefaultMaxBreakers    = 1024
)

type config struct {
	ratio        float64
	minCalls     int
	consecutive  int
	window       time.Duration
	buckets      int
	openDuration time.Duration
	probes       int
	classifier   Classifier
	hooks        []func(Transition)
	bulkMax      int
	bulkWait     time.Duration
	logger       *slog.Logger
	meter        metric.MeterProvider
	syncer       Syncer
	errs         []error
}

func defaultConfig() config {
	return config{
		ratio:        DefaultFailureRatio,
		minCalls:     DefaultMinCalls,
		window:       DefaultWindow,
		buckets:      DefaultBuckets,
		openDuration: DefaultOpenDuration,
		probes:       DefaultHalfOpenProbes,
	}
}

func (c *config) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("breaker: "+format, args...))
}

func (c *config) err() error { return errors.Join(c.errs...) }

// Option configures a [Breaker]. Every Option may also be given to
// [NewGroup] and [NewTransport], where it applies to each breaker they make.
type Option func(*config)

func (o Option) applyGroup(c *groupConfig)         { o(&c.breaker) }
func (o Option) applyTransport(c *transportConfig) { o(&c.group.breaker) }

// GroupOption configures a [Group]: any [Option], or [WithMaxBreakers].
type GroupOption interface{ applyGroup(*groupConfig) }

// TransportOption configures a [Transport]: any [Option] or [GroupOption],
// or [WithKeyFunc] or [WithFallback].
type TransportOption interface{ applyTransport(*transportConfig) }

// WithFailureRatio makes the breaker trip when, within the rolling window
// ([WithWindow]), at least minCalls calls completed (successes plus
// failures; ignored calls do not count) and the share of failures among them
// is at least ratio. ratio must be in (0, 1] and minCalls at least 1.
// Defaults to 0.5 and 20. It replaces [WithConsecutiveFailures].
func WithFailureRatio(ratio float64, minCalls int) Option {
	return func(c *config) {
		if math.IsNaN(ratio) || ratio <= 0 || ratio > 1 {
			c.fail("WithFailureRatio: ratio %v is not in (0, 1]", ratio)
		}
		if minCalls < 1 {
			c.fail("WithFailureRatio: minCalls %d is below 1", minCalls)
		}
		c.ratio, c.minCalls, c.consecutive = ratio, minCalls, 0
	}
}

// WithConsecutiveFailures makes the breaker trip after n failures in a row
// (ignored calls do not break the run), instead of on a failure ratio. n must
// be at least 1. By default the breaker trips on a failure ratio
// ([WithFailureRatio]).
func WithConsecutiveFailures(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.fail("WithConsecutiveFailures: n %d is below 1", n)
		}
		c.consecutive = n
	}
}

// WithWindow sets the rolling window over which calls are counted while the
// circuit is closed, and the number of buckets it is divided into: counts
// age out one bucket (window/buckets) at a time. window must be positive,
// buckets at least 1 and window/buckets at least a millisecond. Defaults to
// 10 seconds in 10 buckets.
func WithWindow(window time.Duration, buckets int) Option {
	return func(c *config) {
		if window <= 0 {
			c.fail("WithWindow: window %v is not positive", window)
		}
		if buckets < 1 {
			c.fail("WithWindow: buckets %d is below 1", buckets)
		} else if window > 0 && window/time.Duration(buckets) < time.Millisecond {
			c.fail("WithWindow: bucket %v (window %v / %d buckets) is below 1ms", window/time.Duration(buckets), window, buckets)
		}
		c.window, c.buckets = window, buckets
	}
}

// WithOpenDuration sets how long the circuit stays open before it lets
// probes through. d must be positive. Defaults to 30 seconds.
func WithOpenDuration(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.fail("WithOpenDuration: duration %v is not positive", d)
		}
		c.openDuration = d
	}
}

// WithHalfOpenProbes sets how many calls a half-open circuit lets through;
// the others are rejected with [ErrProbeLimit]. The circuit closes when that
// many probes succeeded and re-opens on the first failure. n must be at
// least 1. Defaults to 1.
func WithHalfOpenProbes(n int) Option {
	return func(c *config) {
		if n < 1 || n > math.MaxUint32 {
			c.fail("WithHalfOpenProbes: n %d is not in [1, %d]", n, uint32(math.MaxUint32))
		}
		c.probes = n
	}
}

// WithClassifier sets the function that tells successes from failures. The
// caller's own cancellation is never counted, whatever it says (see
// [Classifier]). c must not be nil. Defaults to [DefaultClassifier].
func WithClassifier(cl Classifier) Option {
	return func(c *config) {
		if cl == nil {
			c.fail("WithClassifier: classifier is nil")
		}
		c.classifier = cl
	}
}

// WithStateHook adds a function called on each state change, outside any
// lock, so it may call back into the breaker. It runs in the goroutine of a
// call (or of State, or of the Syncer) that saw the change, after gobreaker
// released its mutex and before that call returns to its caller: a slow hook
// delays that one call, never the others. Hooks of one breaker are called
// one at a time, in the order of the transitions. Several hooks may be
// added. By default there is none.
func WithStateHook(hook func(Transition)) Option {
	return func(c *config) {
		if hook == nil {
			c.fail("WithStateHook: hook is nil")
			return
		}
		c.hooks = append(c.hooks, hook)
	}
}

// WithBulkhead bounds the number of concurrent calls through the breaker to
// limit. A call that finds no free slot waits for one at most wait (zero:
// not at all), then fails with [ErrBulkheadFull]. limit must be at least 1
// and wait not negative. By default there is no bulkhead.
func WithBulkhead(limit int, wait time.Duration) Option {
	return func(c *config) {
		if limit < 1 {
			c.fail("WithBulkhead: limit %d is below 1", limit)
		}
		if wait < 0 {
			c.fail("WithBulkhead: wait %v is negative", wait)
		}
		c.bulkMax, c.bulkWait = limit, wait
	}
}

// WithLogger sets the logger of state changes: one line per transition (at
// warn level when the circuit opens, info otherwise); nothing is logged per
// call. nil means slog.Default(), which is the default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithMeterProvider sets the OpenTelemetry meter provider of the metrics
// breaker.state, breaker.transitions and breaker.rejections. nil means
// otel.GetMeterProvider(), which is the default.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meter = mp }
}

// WithSync shares the breaker's counts and state through s (for example a
// *redisshare.Share): the breaker registers itself with s when it is made
// and, in a Group, unregisters when it is evicted. By default state is
// local to the process.
func WithSync(s Syncer) Option {
	return func(c *config) {
		if s == nil {
			c.fail("WithSync: syncer is nil")
		}
		c.syncer = s
	}
}

type groupConfig struct {
	breaker     config
	maxBreakers int
}

type groupOption func(*groupConfig)

func (o groupOption) applyGroup(c *groupConfig)         { o(c) }
func (o groupOption) applyTransport(c *transportConfig) { o(&c.group) }

// WithMaxBreakers bounds the number of breakers of a [Group] (and so of
// hosts of a [Transport]) to n. When a new key arrives and the group is full,
// the least recently used breaker that is closed and has no call in flight
// is evicted; if there is none, the call fails with [ErrGroupFull]. n must
// be at least 1. Defaults to 1024.
func WithMaxBreakers(n int) GroupOption {
	return groupOption(func(c *groupConfig) {
		if n < 1 {
			c.breaker.fail("WithMaxBreakers: n %d is below 1", n)
		}
		c.maxBreakers = n
	})
}

type transportConfig struct {
	group    groupConfig
	key      func(*http.Request) string
	fallback func(*http.Request, error) (*http.Response, error)
}

type transportOption func(*transportConfig)

func (o transportOption) applyTransport(c *transportConfig) { o(c) }

// WithKeyFunc sets how a [Transport] picks the breaker of a request. f must
// not be nil. Defaults to the request's host (req.URL.Host, with its port).
func WithKeyFunc(f func(*http.Request) string) TransportOption {
	return transportOption(func(c *transportConfig) {
		if f == nil {
			c.group.breaker.fail("WithKeyFunc: key function is nil")
		}
		c.key = f
	})
}

// WithFallback sets a function a [Transport] calls instead of returning an
// error when the circuit rejected the request (open, probe limit, bulkhead
// full) or when the request failed with a transport error or a timeout; its
// result is returned to the caller. It is never called when the caller
// cancelled the request, nor for a 5xx response, which is returned as it is
// (it carries what a retry layer needs, such as Retry-After). f must not be
// nil. By default there is no fallback.
func WithFallback(f func(req *http.Request, err error) (*http.Response, error)) TransportOption {
	return transportOption(func(c *transportConfig) {
		if f == nil {
			c.group.breaker.fail("WithFallback: fallback is nil")
		}
		c.fallback = f
	})
}
