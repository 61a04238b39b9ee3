package retry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Defaults of a Policy made by New without options; each option's
// documentation repeats its own.
const (
	defaultMaxAttempts   = 4
	defaultBase          = 100 * time.Millisecond
	defaultMax           = 10 * time.Second
	defaultMaxRetryAfter = 30 * time.Second
	defaultBudgetRatio   = 0.2
	defaultBudgetFloor   = 10
	defaultBudgetWindow  = 10 * time.Second
)

// defaultKeyHeader is the idempotency key header a Transport looks for
// unless WithKeyHeaders names others: idempotency.DefaultKeyHeader's value
// (retry does not import idempotency).
const defaultKeyHeader = "Idempotency-Key"

// The constructors, as options name them.
const (
	ctorNew       = "New"
	ctorTransport = "NewTransport"
)

// Option configures a Policy (New) or a Transport (NewTransport). Options are
// made by the With functions of this package and applied in order.
// WithKeyHeaders, WithIdempotentMethods and WithAutoIdempotencyKey apply to
// NewTransport, every other option to New; a constructor refuses, with an
// error naming it, an option that does not apply to it or makes no sense.
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

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("retry", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

// config holds the settings of both constructors: a Policy's and a
// Transport's.
type config struct {
	maxAttempts    int
	base, max      time.Duration
	newBackOff     func() backoff.BackOff
	attemptTimeout time.Duration
	classifier     func(error) bool
	maxRetryAfter  time.Duration
	onRetry        func(ctx context.Context, attempt int, err error, wait time.Duration)
	logger         *slog.Logger
	meterProvider  metric.MeterProvider
	budget         bool
	budgetRatio    float64
	budgetFloor    int
	budgetWindow   time.Duration
	name           string
	rnd            func() float64 // jitter source; nil: math/rand/v2's (tests set it)

	// Transport
	keyHeaders []string
	methods    []string
	autoKey    bool
}

var errNilFunc = errors.New("function is nil")

// WithMaxAttempts sets the number of attempts, the first included: 1 means
// no retry. It must be at least 1. Defaults to 4.
func WithMaxAttempts(attempts int) Option {
	return newOption("WithMaxAttempts", func(c *config) error {
		if attempts < 1 {
			return fmt.Errorf("attempts %d must be at least 1", attempts)
		}
		c.maxAttempts = attempts
		return nil
	}, ctorNew)
}

// WithBackoff sets the capped exponential backoff with full jitter: the wait
// before retry n is uniformly random in [0, min(max, base·2^(n-1))), as
// Delay(n, base, max) computes it. base must be positive and max at least
// base. Defaults to 100 ms and 10 s.
func WithBackoff(base, max time.Duration) Option {
	return newOption("WithBackoff", func(c *config) error {
		if base <= 0 {
			return fmt.Errorf("base %v must be positive", base)
		}
		if max < base {
			return fmt.Errorf("max %v must be at least base %v", max, base)
		}
		c.base, c.max = base, max
		c.newBackOff = nil
		return nil
	}, ctorNew)
}

// WithBackOffFunc replaces the full-jitter backoff by any backoff/v4 BackOff.
// newBackOff is called once per call that fails, for a fresh state; the
// BackOff it returns is used by that call only. backoff.Stop ends the call
// with a *GaveUpError whose Reason is ErrBackOffStop. newBackOff must not be
// nil. Defaults to full jitter with the settings of WithBackoff.
func WithBackOffFunc(newBackOff func() backoff.BackOff) Option {
	return newOption("WithBackOffFunc", func(c *config) error {
		if newBackOff == nil {
			return errNilFunc
		}
		c.newBackOff = newBackOff
		return nil
	}, ctorNew)
}

// WithAttemptTimeout bounds each attempt: its context is cancelled with cause
// ErrAttemptTimeout (set with context.WithTimeoutCause) after d, and the
// attempt's error then matches ErrAttemptTimeout. A timed-out attempt is
// retried while the caller's context lives. d must not be negative; 0 means
// no per-attempt timeout. Defaults to 0: only the caller's context bounds the
// attempts.
func WithAttemptTimeout(d time.Duration) Option {
	return newOption("WithAttemptTimeout", func(c *config) error {
		if d < 0 {
			return fmt.Errorf("timeout %v must not be negative", d)
		}
		c.attemptTimeout = d
		return nil
	}, ctorNew)
}

// WithClassifier sets the function that decides whether a failed attempt of
// Do may be retried. It is consulted after the error protocol: an error marked
// Permanent is never retried and an attempt that hit the per-attempt timeout
// always is, whatever the classifier says. It must be safe for concurrent
// use and must not be nil. The Transport does not use it: HTTP outcomes follow
// fixed rules. Defaults to retrying every other error.
func WithClassifier(retryable func(err error) bool) Option {
	return newOption("WithClassifier", func(c *config) error {
		if retryable == nil {
			return errNilFunc
		}
		c.classifier = retryable
		return nil
	}, ctorNew)
}

// WithMaxRetryAfter sets the longest delay a failure may ask for (an HTTP
// Retry-After, or an error's RetryAfter method) and still be waited for; a
// longer one ends the call at once with a *RetryAfterError. d must not be
// negative. Defaults to 30 s.
func WithMaxRetryAfter(d time.Duration) Option {
	return newOption("WithMaxRetryAfter", func(c *config) error {
		if d < 0 {
			return fmt.Errorf("duration %v must not be negative", d)
		}
		c.maxRetryAfter = d
		return nil
	}, ctorNew)
}

// WithOnRetry sets a hook called before each wait, with the number of the
// attempt that failed (1 for the first), its error (a *StatusError for a
// retryable HTTP response) and the wait that follows. It runs on the calling
// goroutine, so it must be quick, and concurrently for concurrent calls. hook
// must not be nil. Defaults to none.
func WithOnRetry(hook func(ctx context.Context, attempt int, err error, wait time.Duration)) Option {
	return newOption("WithOnRetry", func(c *config) error {
		if hook == nil {
			return errNilFunc
		}
		c.onRetry = hook
		return nil
	}, ctorNew)
}

// WithLogger sets the logger. The Policy logs retries and give-ups at Debug
// level, and that the retry budget refuses retries at Warn, at most once per
// budget window; nothing is logged per call above Debug. l must not be nil.
// Defaults to slog.Default() at the time of each log.
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	}, ctorNew)
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counters
// steadfast.retry.attempts, .retries, .give_ups (with attribute
// retry.reason) and .budget_refusals, each with retry.policy (WithName). mp must not be nil. Defaults
// to otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if mp == nil {
			return errors.New("meter provider is nil")
		}
		c.meterProvider = mp
		return nil
	}, ctorNew)
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
// negative and window positive. Defaults to a ratio of 0.2, a floor of 10 and
// a window of 10 s.
func WithBudget(ratio float64, floor int, window time.Duration) Option {
	return newOption("WithBudget", func(c *config) error {
		if !(ratio >= 0 && ratio <= 1000) {
			return fmt.Errorf("ratio %v must be in [0, 1000]", ratio)
		}
		if floor < 0 {
			return fmt.Errorf("floor %d must not be negative", floor)
		}
		if window <= 0 {
			return fmt.Errorf("window %v must be positive", window)
		}
		c.budget = true
		c.budgetRatio, c.budgetFloor, c.budgetWindow = ratio, floor, window
		return nil
	}, ctorNew)
}

// WithoutBudget removes the retry budget: every call may use all its
// attempts. The default is a budget (see WithBudget).
func WithoutBudget() Option {
	return newOption("WithoutBudget", func(c *config) error {
		c.budget = false
		return nil
	}, ctorNew)
}

// WithName names the Policy in its logs and in the attribute
// retry.policy of its metrics, so that the policies of several
// dependencies can be told apart. Defaults to no name.
func WithName(name string) Option {
	return newOption("WithName", func(c *config) error {
		c.name = name
		return nil
	}, ctorNew)
}

// WithKeyHeaders names the headers that carry an idempotency key: a request
// with a non-empty value in any of them may be retried whatever its method
// (for example "webhook-id" for Standard Webhooks deliveries). The names
// replace the default; the first one is the header WithAutoIdempotencyKey
// sets. At least one valid header name is required. It applies to
// NewTransport. Defaults to Idempotency-Key (idempotency.DefaultKeyHeader).
func WithKeyHeaders(names ...string) Option {
	return newOption("WithKeyHeaders", func(c *config) error {
		if len(names) == 0 {
			return errors.New("at least one header name is required")
		}
		keys := make([]string, 0, len(names))
		for _, n := range names {
			if !validToken(n) {
				return fmt.Errorf("header name %q is not a valid token", n)
			}
			keys = append(keys, http.CanonicalHeaderKey(n))
		}
		c.keyHeaders = keys
		return nil
	}, ctorTransport)
}

// WithIdempotentMethods adds methods whose requests are retried like GET,
// typically http.MethodPut and http.MethodDelete when the server implements
// them idempotently, as RFC 9110 says it should. GET, HEAD, OPTIONS and TRACE
// are always idempotent. At least one valid method is required. It applies
// to NewTransport. Defaults to none.
func WithIdempotentMethods(methods ...string) Option {
	return newOption("WithIdempotentMethods", func(c *config) error {
		if len(methods) == 0 {
			return errors.New("at least one method is required")
		}
		for _, m := range methods {
			if !validToken(m) {
				return fmt.Errorf("method %q is not a valid token", m)
			}
		}
		c.methods = append(c.methods, methods...)
		return nil
	}, ctorTransport)
}

// WithAutoIdempotencyKey makes the Transport attach a fresh key (a random
// UUID, github.com/google/uuid) in the first key header (see WithKeyHeaders)
// to POST and PATCH requests that carry none, on a copy of the request. The
// key is the same on every attempt of one RoundTrip, so a server that honours
// the header performs the write once however many attempts it sees; such
// requests are then retried like any request that carries a key. It applies
// to NewTransport. Defaults to off: a POST or PATCH without a key is never
// retried after it may have been sent.
func WithAutoIdempotencyKey() Option {
	return newOption("WithAutoIdempotencyKey", func(c *config) error {
		c.autoKey = true
		return nil
	}, ctorTransport)
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}
