package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Defaults of the options; each option's documentation repeats its own.
const (
	defaultFailureRatio   = 0.5
	defaultMinCalls       = 20
	defaultWindow         = 10 * time.Second
	defaultBuckets        = 10
	defaultOpenDuration   = 30 * time.Second
	defaultHalfOpenProbes = 1
	defaultMaxBreakers    = 1024
)

// The constructors, as options name them.
const (
	ctorNew       = "New"
	ctorGroup     = "NewGroup"
	ctorTransport = "NewTransport"
)

// Option configures a [Breaker] (New), a [Group] (NewGroup) or a [Transport]
// (NewTransport). Options are made by the With functions of this package and
// applied in order. Every option of a breaker may also be given to NewGroup
// and NewTransport, where it applies to each breaker they make; a constructor
// refuses, with an error naming it, an option that does not apply to it
// (such as WithFallback given to New) or makes no sense.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

// newOption makes an option named name; for lists the constructors it applies
// to (none: all).
func newOption(name string, set func(*config) error, for_ ...string) Option {
	return &optionFunc{Name: name, For: for_, Set: set}
}

// config holds the settings of every constructor: a breaker's, a group's and
// a transport's.
type config struct {
	ratio        float64
	minCalls     int
	consecutive  int
	window       time.Duration
	buckets      int
	openDuration time.Duration
	probes       int
	classifier   func(context.Context, error) Outcome
	hooks        []func(Transition)
	bulkMax      int
	bulkWait     time.Duration
	logger       *slog.Logger
	meter        metric.MeterProvider
	syncer       Syncer

	// Group and Transport
	maxBreakers int

	// Transport
	key      func(*http.Request) string
	fallback func(*http.Request, error) (*http.Response, error)
}

// newConfig returns the defaults with opts applied, for the constructor ctor.
func newConfig(ctor string, opts []Option) (config, error) {
	c := config{
		ratio:        defaultFailureRatio,
		minCalls:     defaultMinCalls,
		window:       defaultWindow,
		buckets:      defaultBuckets,
		openDuration: defaultOpenDuration,
		probes:       defaultHalfOpenProbes,
		maxBreakers:  defaultMaxBreakers,
	}
	err := option.Apply("breaker", ctor, &c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
	return c, err
}

var errNilFunc = errors.New("function is nil")

// WithFailureRatio makes the breaker trip when, within the rolling window
// ([WithWindow]), at least minCalls calls completed (successes plus
// failures; ignored calls do not count) and the share of failures among them
// is at least ratio. ratio must be in (0, 1] and minCalls at least 1.
// Defaults to 0.5 and 20. It replaces [WithConsecutiveFailures].
func WithFailureRatio(ratio float64, minCalls int) Option {
	return newOption("WithFailureRatio", func(c *config) error {
		if !(ratio > 0 && ratio <= 1) {
			return fmt.Errorf("ratio %v must be in (0, 1]", ratio)
		}
		if minCalls < 1 {
			return fmt.Errorf("minCalls %d must be at least 1", minCalls)
		}
		c.ratio, c.minCalls, c.consecutive = ratio, minCalls, 0
		return nil
	})
}

// WithConsecutiveFailures makes the breaker trip after n failures in a row
// (ignored calls do not break the run), instead of on a failure ratio. n must
// be at least 1. By default the breaker trips on a failure ratio
// ([WithFailureRatio]).
func WithConsecutiveFailures(n int) Option {
	return newOption("WithConsecutiveFailures", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("failures %d must be at least 1", n)
		}
		c.consecutive = n
		return nil
	})
}

// WithWindow sets the rolling window over which calls are counted while the
// circuit is closed, and the number of buckets it is divided into: counts
// age out one bucket (window/buckets) at a time. window must be positive,
// buckets at least 1 and window/buckets at least a millisecond. Defaults to
// 10 seconds in 10 buckets.
func WithWindow(window time.Duration, buckets int) Option {
	return newOption("WithWindow", func(c *config) error {
		if window <= 0 {
			return fmt.Errorf("window %v must be positive", window)
		}
		if buckets < 1 {
			return fmt.Errorf("buckets %d must be at least 1", buckets)
		}
		if b := window / time.Duration(buckets); b < time.Millisecond {
			return fmt.Errorf("bucket %v (window %v / %d buckets) must be at least 1ms", b, window, buckets)
		}
		c.window, c.buckets = window, buckets
		return nil
	})
}

// WithOpenDuration sets how long the circuit stays open before it lets
// probes through. d must be positive. Defaults to 30 seconds.
func WithOpenDuration(d time.Duration) Option {
	return newOption("WithOpenDuration", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("duration %v must be positive", d)
		}
		c.openDuration = d
		return nil
	})
}

// WithHalfOpenProbes sets how many calls a half-open circuit lets through;
// the others are rejected with [ErrProbeLimit]. The circuit closes when that
// many probes succeeded and re-opens on the first failure. n must be at
// least 1. Defaults to 1.
func WithHalfOpenProbes(n int) Option {
	return newOption("WithHalfOpenProbes", func(c *config) error {
		if n < 1 || n > math.MaxUint32 {
			return fmt.Errorf("probes %d must be in [1, %d]", n, uint32(math.MaxUint32))
		}
		c.probes = n
		return nil
	})
}

// WithClassifier sets the function that tells how a call that returned the
// non-nil error err counts: [Success], [Failure] or [Ignore] (a nil error is
// always a success). ctx is the context the call ran with. The classifier is
// never asked about the caller's own cancellation: an error matching
// context.Canceled, or any error while ctx was cancelled (not timed out), is
// ignored before it is called. It must be safe for concurrent use and must
// not be nil. Defaults to counting every error as a failure, timeouts
// (context.DeadlineExceeded, a per-attempt timeout) included.
func WithClassifier(classify func(ctx context.Context, err error) Outcome) Option {
	return newOption("WithClassifier", func(c *config) error {
		if classify == nil {
			return errNilFunc
		}
		c.classifier = classify
		return nil
	})
}

// WithStateHook adds a function called on each state change, outside any
// lock, so it may call back into the breaker. It runs in the goroutine of a
// call (or of State, or of the shared state's loop) that saw the change,
// after gobreaker released its mutex and before that call returns to its
// caller: a slow hook delays that one call, never the others. Hooks of one
// breaker are called one at a time, in the order of the transitions. Several
// hooks may be added; hook must not be nil. By default there is none.
func WithStateHook(hook func(Transition)) Option {
	return newOption("WithStateHook", func(c *config) error {
		if hook == nil {
			return errNilFunc
		}
		c.hooks = append(c.hooks, hook)
		return nil
	})
}

// WithBulkhead bounds the number of concurrent calls through the breaker to
// limit. A call that finds no free slot waits for one at most wait (zero:
// not at all), then fails with [ErrBulkheadFull]. limit must be at least 1
// and wait not negative. By default there is no bulkhead.
func WithBulkhead(limit int, wait time.Duration) Option {
	return newOption("WithBulkhead", func(c *config) error {
		if limit < 1 {
			return fmt.Errorf("limit %d must be at least 1", limit)
		}
		if wait < 0 {
			return fmt.Errorf("wait %v must not be negative", wait)
		}
		c.bulkMax, c.bulkWait = limit, wait
		return nil
	})
}

// WithLogger sets the logger of state changes: one line per transition (at
// warn level when the circuit opens, info otherwise); nothing is logged per
// call. l must not be nil. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	})
}

// WithMeterProvider sets the OpenTelemetry meter provider of the metrics
// steadfast.breaker.state, steadfast.breaker.transitions and steadfast.breaker.rejections, with the
// attributes breaker.name, and breaker.from, breaker.to and breaker.shared on a
// transition, breaker.reason on a rejection. mp must not be nil. Defaults to otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if mp == nil {
			return errors.New("meter provider is nil")
		}
		c.meter = mp
		return nil
	})
}

// WithSync shares the breaker's counts and state through s (a
// *redisshare.Share): the breaker registers itself with s when it is made
// and, in a Group, unregisters when it is evicted. s must not be nil. By
// default state is local to the process.
func WithSync(s Syncer) Option {
	return newOption("WithSync", func(c *config) error {
		if s == nil {
			return errors.New("syncer is nil")
		}
		c.syncer = s
		return nil
	})
}

// WithMaxBreakers bounds the number of breakers of a [Group] (and so of
// hosts of a [Transport]) to n. When a new key arrives and the group is full,
// the least recently used breaker that is closed and has no call in flight
// is evicted; if there is none, the call fails with [ErrGroupFull]. n must
// be at least 1. It applies to NewGroup and NewTransport. Defaults to 1024.
func WithMaxBreakers(n int) Option {
	return newOption("WithMaxBreakers", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("breakers %d must be at least 1", n)
		}
		c.maxBreakers = n
		return nil
	}, ctorGroup, ctorTransport)
}

// WithKeyFunc sets how a [Transport] picks the breaker of a request. key
// must not be nil. It applies to NewTransport. Defaults to the request's
// host (req.URL.Host, with its port).
func WithKeyFunc(key func(*http.Request) string) Option {
	return newOption("WithKeyFunc", func(c *config) error {
		if key == nil {
			return errNilFunc
		}
		c.key = key
		return nil
	}, ctorTransport)
}

// WithFallback sets a function a [Transport] calls instead of returning an
// error when the circuit rejected the request (open, probe limit, bulkhead
// full) or when the request failed with a transport error or a timeout; its
// result is returned to the caller. It is never called when the caller
// cancelled the request, nor for a 5xx response, which is returned as it is
// (it carries what a retry layer needs, such as Retry-After). fallback must
// not be nil. It applies to NewTransport. By default there is no fallback.
func WithFallback(fallback func(req *http.Request, err error) (*http.Response, error)) Option {
	return newOption("WithFallback", func(c *config) error {
		if fallback == nil {
			return errNilFunc
		}
		c.fallback = fallback
		return nil
	}, ctorTransport)
}
