package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Notifier wakes a relay when messages were committed, so that it need not
// wait for its next poll. Listen runs until ctx ends or its connection fails,
// calling notify (which never blocks) for each notification; it returns the
// reason it stopped. The relay calls Listen again after a failure, with
// backoff. pgxoutbox.Listener is the PostgreSQL LISTEN/NOTIFY one.
type Notifier interface {
	Listen(ctx context.Context, notify func()) error
}

// Option configures a Relay. Options are made by the With functions of this
// package and applied in order; NewRelay refuses, with an error naming it, an
// option whose value makes no sense.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

// newOption makes an option named name. NewRelay is the package's only
// constructor, so every option applies to it.
func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("outbox", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

// Defaults of the options; each option's documentation repeats its own.
const (
	defaultBatchSize              = 300
	defaultConcurrency            = 64
	defaultDestinationConcurrency = 16
	defaultLease                  = 10 * time.Second
	defaultPublishTimeout         = 15 * time.Second
	defaultPollInterval           = time.Second
	defaultBackoffBase            = time.Second
	defaultBackoffMax             = time.Minute
	defaultMaxAttempts            = 10
	defaultMaxAbandoned           = 20
	defaultMaxRetryAfter          = time.Hour
	defaultPause                  = 30 * time.Second

	// claimers is how many claim loops run side by side, so that claiming
	// overlaps the database round trips.
	defaultClaimers = 2
	// statsInterval is how often the relay reads the backlog for its gauges.
	statsInterval = 15 * time.Second
)

type config struct {
	batchSize       int
	concurrency     int
	destConcurrency int
	claimers        int
	lease           time.Duration
	publishTimeout  time.Duration
	pollInterval    time.Duration
	notifier        Notifier
	backoffBase     time.Duration
	backoffMax      time.Duration
	maxAttempts     int
	maxAbandoned    int
	maxRetryAfter   time.Duration
	pause           time.Duration
	logger          *slog.Logger
	meterProvider   metric.MeterProvider
	tracerProvider  trace.TracerProvider
	throttle        func(ctx context.Context, destination string) error
}

func defaults() config {
	return config{
		batchSize:       defaultBatchSize,
		concurrency:     defaultConcurrency,
		destConcurrency: defaultDestinationConcurrency,
		claimers:        defaultClaimers,
		lease:           defaultLease,
		publishTimeout:  defaultPublishTimeout,
		pollInterval:    defaultPollInterval,
		backoffBase:     defaultBackoffBase,
		backoffMax:      defaultBackoffMax,
		maxAttempts:     defaultMaxAttempts,
		maxAbandoned:    defaultMaxAbandoned,
		maxRetryAfter:   defaultMaxRetryAfter,
		pause:           defaultPause,
		logger:          slog.Default(),
		meterProvider:   otel.GetMeterProvider(),
		tracerProvider:  otel.GetTracerProvider(),
	}
}

func atLeastOne(what string, n int) error {
	if n < 1 {
		return fmt.Errorf("%s %d must be at least 1", what, n)
	}
	return nil
}

func positive(what string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s %v must be positive", what, d)
	}
	return nil
}

// WithBatchSize sets the most messages one claim takes. A relay holds up to
// two batches beyond its concurrency in memory (claimed, waiting for a
// publish slot or for their write-back). n must be at least 1. Defaults to
// 300: each claim and write-back statement has a fixed cost that larger
// batches spread thinner.
func WithBatchSize(n int) Option {
	return newOption("WithBatchSize", func(c *config) error {
		c.batchSize = n
		return atLeastOne("batch size", n)
	})
}

// WithConcurrency sets the most publishes in flight at once, over all
// destinations. n must be at least 1. Defaults to 64.
func WithConcurrency(n int) Option {
	return newOption("WithConcurrency", func(c *config) error {
		c.concurrency = n
		return atLeastOne("concurrency", n)
	})
}

// WithDestinationConcurrency sets the most publishes in flight at once to
// one destination (see Message.Destination), so that a slow destination
// cannot take every slot; the relay also stops claiming a destination's
// messages while it holds this many plus a batch of them. n must be at least
// 1. Defaults to 16 (capped at the overall concurrency).
func WithDestinationConcurrency(n int) Option {
	return newOption("WithDestinationConcurrency", func(c *config) error {
		c.destConcurrency = n
		return atLeastOne("concurrency", n)
	})
}

// WithLease sets how long a claim lasts unrenewed. A relay renews the
// leases of the messages it holds every quarter lease, while they wait for a
// publishing slot and while they are published, so the lease does not bound
// how long a publish may take (WithPublishTimeout does); it bounds how long
// the messages of a relay that died (or lost the store) stay with it: other
// relays claim them one lease after its last renewal. A publish is cut off
// when its lease runs out unrenewed, and then counts as no attempt. Keep it
// several times the store's round trip. d must be positive. Defaults to
// 10 s: a crashed relay's keys move again within about 11 s.
func WithLease(d time.Duration) Option {
	return newOption("WithLease", func(c *config) error {
		c.lease = d
		return positive("lease", d)
	})
}

// WithPublishTimeout bounds one publish; a publish cut off by it (its
// context's cause is ErrPublishTimeout) is retried. It may exceed the lease
// (see WithLease). d must be positive. Defaults to 15 s.
func WithPublishTimeout(d time.Duration) Option {
	return newOption("WithPublishTimeout", func(c *config) error {
		c.publishTimeout = d
		return positive("timeout", d)
	})
}

// WithPollInterval sets how often the relay looks for ready messages when
// nothing woke it. With a Notifier it is the fallback for lost
// notifications; without one (poll-only mode, for connection poolers that
// cannot LISTEN) it bounds the delivery delay. d must be positive. Defaults
// to 1 s.
func WithPollInterval(d time.Duration) Option {
	return newOption("WithPollInterval", func(c *config) error {
		c.pollInterval = d
		return positive("interval", d)
	})
}

// WithNotifier wakes the relay on commits (pgxoutbox.Listener). n must not
// be nil. Defaults to none: poll-only.
func WithNotifier(n Notifier) Option {
	return newOption("WithNotifier", func(c *config) error {
		if isNil(n) {
			return errors.New("notifier is nil")
		}
		c.notifier = n
		return nil
	})
}

// WithBackoff sets the retry delays after a failed publish: full jitter,
// from base doubling to max, computed by retry.Delay from the message's
// attempt count. base must be positive and max at least base. Defaults to
// 1 s and 1 min. Broker deduplication windows (JetStream's is 2 min by
// default) should outlast max.
func WithBackoff(base, max time.Duration) Option {
	return newOption("WithBackoff", func(c *config) error {
		if err := positive("base", base); err != nil {
			return err
		}
		if max < base {
			return fmt.Errorf("max %v must be at least base %v", max, base)
		}
		c.backoffBase, c.backoffMax = base, max
		return nil
	})
}

// WithMaxAttempts sets how many delivery attempts a message gets before it
// becomes a dead letter with its last error. An attempt is a publish whose
// outcome was written back; a claim that ended without one (its relay died
// or stalled past the lease) is no attempt: see WithMaxAbandoned. n must be
// at least 1. Defaults to 10.
func WithMaxAttempts(n int) Option {
	return newOption("WithMaxAttempts", func(c *config) error {
		c.maxAttempts = n
		return atLeastOne("attempts", n)
	})
}

// WithMaxAbandoned sets how many of a message's claims may end without an
// outcome (the relay holding it died, or stalled past its lease) before the
// next relay to claim it dead-letters it unpublished, with "abandoned n
// times" as the reason: a message that kills its relay every time it is
// published does not loop forever, while the crashes of relays that had
// nothing against it spend none of its attempts. n must be at least 1.
// Defaults to 20.
func WithMaxAbandoned(n int) Option {
	return newOption("WithMaxAbandoned", func(c *config) error {
		c.maxAbandoned = n
		return atLeastOne("abandoned claims", n)
	})
}

// WithMaxRetryAfter caps the delay a failed publish asks for with
// RetryAfter (an HTTP Retry-After) before the message's next attempt. It does
// not apply to pauses (ErrPaused): a pause lasts what the publisher asked
// (webhookpub's WithGonePause for a 410, an open breaker's remaining open
// time) or WithPause's default, and an operator lifts it early with
// Store.Resume. d must be positive. Defaults to one hour.
func WithMaxRetryAfter(d time.Duration) Option {
	return newOption("WithMaxRetryAfter", func(c *config) error {
		c.maxRetryAfter = d
		return positive("delay", d)
	})
}

// WithPause sets how long a destination is paused when its publisher
// returns ErrPaused without a duration (see Pause for what a pause does). d
// must be positive. Defaults to 30 s.
func WithPause(d time.Duration) Option {
	return newOption("WithPause", func(c *config) error {
		c.pause = d
		return positive("pause", d)
	})
}

// WithLogger sets the logger. Failures of the store and of the notifier,
// lost leases and dead letters are logged at Warn; single publishes, failed
// or not, only at Debug. l must not be nil. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	})
}

// WithMeterProvider sets where metrics go. mp must not be nil. Defaults to
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if isNil(mp) {
			return errors.New("meter provider is nil")
		}
		c.meterProvider = mp
		return nil
	})
}

// WithTracerProvider sets where publish spans go. tp must not be nil.
// Defaults to otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return newOption("WithTracerProvider", func(c *config) error {
		if isNil(tp) {
			return errors.New("tracer provider is nil")
		}
		c.tracerProvider = tp
		return nil
	})
}

// WithThrottle makes the relay ask throttle, before each delivery, whether
// the message's destination may have one more now, so that it takes from each
// destination only what the destination's quota allows: throttle returns nil
// (go: budget taken) or an error whose RetryAfter() time.Duration says when
// to ask again, such as a *ratelimit.LimitedError. Both
// (*ratelimit.Limiter).Allow and webhookpub's (*Publisher).Throttle have its
// type.
//
// A throttled destination is held back in this relay's memory: its claimed
// messages wait, leases renewed, neither in a publishing slot nor spending an
// attempt, and it writes nothing to the store (unlike a pause, for outages,
// which is recorded for every relay); the relay claims no more of it until
// the delay ends, and other destinations keep flowing meanwhile. An error
// without RetryAfter (the limiter unreachable, its context ended) holds the
// destination back for a poll interval. throttle is called with a context
// carrying Start's values and must not block long. It must not be nil. By
// default no destination is throttled.
func WithThrottle(throttle func(ctx context.Context, destination string) error) Option {
	return newOption("WithThrottle", func(c *config) error {
		if throttle == nil {
			return errors.New("throttle function is nil")
		}
		c.throttle = throttle
		return nil
	})
}

// finish settles what involves two options.
func (c *config) finish(string) error {
	c.destConcurrency = min(c.destConcurrency, c.concurrency)
	return nil
}
