package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Defaults of the options.
const (
	// defaultTolerance is how far a signed timestamp may be from the
	// verifier's clock, in either direction, unless WithTolerance says
	// otherwise.
	defaultTolerance = 5 * time.Minute
	// defaultMaxBodyBytes is the largest body the middleware reads unless
	// WithMaxBodyBytes says otherwise.
	defaultMaxBodyBytes = 1 << 20
)

// Option configures a Verifier, a StripeVerifier or the middleware of
// NewMiddleware. Options are made by the With functions of this package; a
// constructor refuses, with an error naming it, an option that does not apply
// to it (WithTolerance given to NewMiddleware: the tolerance belongs to the
// verifier).
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

// newOption: for lists the constructors it applies to (none: all).
func newOption(name string, set func(*config) error, for_ ...string) Option {
	return &optionFunc{Name: name, For: for_, Set: set}
}

// The constructors, as options name them.
const (
	ctorVerifier       = "NewVerifier"
	ctorStripeVerifier = "NewStripeVerifier"
	ctorMiddleware     = "NewMiddleware"
)

type config struct {
	// Verifiers.
	tolerance time.Duration
	now       func() time.Time
	// Middleware.
	maxBody int64
	logger  *slog.Logger
	meter   metric.MeterProvider
}

func defaultConfig() config {
	return config{tolerance: defaultTolerance, now: time.Now, maxBody: defaultMaxBodyBytes}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("webhook", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

// WithTolerance sets how far a signed timestamp may lie from the clock, in
// the past or in the future, before the message is refused as a possible
// replay. It must be at least one second; it is counted in whole seconds.
// Defaults to 5 minutes. It applies to NewVerifier and
// NewStripeVerifier.
func WithTolerance(d time.Duration) Option {
	return newOption("WithTolerance", func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("%v must be at least 1s", d)
		}
		c.tolerance = d
		return nil
	}, ctorVerifier, ctorStripeVerifier)
}

// WithClock sets the clock that signed timestamps are checked against, for
// a receiver that verifies a stored delivery later (give it the time the
// delivery was received). Defaults to time.Now. It applies to NewVerifier
// and NewStripeVerifier.
func WithClock(now func() time.Time) Option {
	return newOption("WithClock", func(c *config) error {
		if now == nil {
			return errors.New("a clock function is required, not nil")
		}
		c.now = now
		return nil
	}, ctorVerifier, ctorStripeVerifier)
}

// WithMaxBodyBytes sets the largest request body the middleware reads; a
// larger one is answered 413 and never reaches the handler. It must be
// positive. Defaults to 1 MiB. It applies to
// NewMiddleware.
func WithMaxBodyBytes(n int64) Option {
	return newOption("WithMaxBodyBytes", func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%d must be positive", n)
		}
		c.maxBody = n
		return nil
	}, ctorMiddleware)
}

// WithLogger sets the logger that records refused requests, at debug level
// (a flood of forged requests must not flood the logs). Defaults to
// slog.Default(). It applies to NewMiddleware.
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("a logger is required, not nil")
		}
		c.logger = l
		return nil
	}, ctorMiddleware)
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counter
// steadfast.webhook.verifications, with the attribute webhook.outcome (ok, invalid,
// too_large, unreadable). Defaults to otel.GetMeterProvider(). It applies to
// NewMiddleware.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if mp == nil {
			return errors.New("a meter provider is required, not nil")
		}
		c.meter = mp
		return nil
	}, ctorMiddleware)
}
