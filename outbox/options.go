package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/steadfast-go/steadfast/retry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Clock tells the relay the time and makes its timers. Tests pass a fake.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Notifier wakes a relay when messages were committed, so that it need not
// wait for its next poll. Listen runs until ctx ends or its connection fails,
// calling notify (which never blocks) for each notification; it returns the
// reason it stopped. The relay calls Listen again after a failure, with
// backoff. sqloutbox.PostgresListener is the PostgreSQL LISTEN/NOTIFY one.
type Notifier interface {
	Listen(ctx context.Context, notify func()) error
}

// Option configures a Relay.
type Option func(*config) error

type config struct {
	batchSize        int
	concurrency      int
	topicConcurrency int
	claimers         int
	lease            time.Duration
	publishTimeout   time.Duration
	pollInterval     time.Duration
	notifier         Notifier
	backoffBase      time.Duration
	backoffMax       time.Duration
	maxAttempts      int
	maxRetryAfter    time.Duration
	pause            time.Duration
	retention        time.Duration
	cleanupInterval  time.Duration
	statsInterval    time.Duration
	clock            Clock
	rand             retry.Rand
	logger           *slog.Logger
	meterProvider    metric.MeterProvider
	tracerProvider   trace.TracerProvider
}

func defaults() config {
	return config{
		batchSize:        300,
		concurrency:      64,
		topicConcurrency: 16,
		claimers:         2,
		lease:            time.Minute,
		publishTimeout:   15 * time.Second,
		pollInterval:     time.Second,
		backoffBase:      time.Second,
		backoffMax:       time.Minute,
		maxAttempts:      10,
		maxRetryAfter:    time.Hour,
		pause:            30 * time.Second,
		retention:        24 * time.Hour,
		cleanupInterval:  time.Minute,
		statsInterval:    15 * time.Second,
		clock:            realClock{},
		logger:           slog.Default(),
	}
}

func positive[T int | time.Duration](name string, v T) error {
	if v <= 0 {
		return fmt.Errorf("outbox: %s must be positive, got %v", name, v)
	}
	return nil
}

// WithBatchSize sets the most messages one claim takes. A relay holds up to
// two batches beyond its concurrency in memory (claimed, waiting for a
// publish slot or for their write-back). Defaults to 300: each claim and
// write-back statement has a fixed cost that larger batches spread thinner.
func WithBatchSize(n int) Option {
	return func(c *config) error { c.batchSize = n; return positive("WithBatchSize", n) }
}

// WithConcurrency sets the most publishes in flight at once, over all
// topics. Defaults to 64.
func WithConcurrency(n int) Option {
	return func(c *config) error { c.concurrency = n; return positive("WithConcurrency", n) }
}

// WithTopicConcurrency sets the most publishes in flight at once to one
// topic, so that a slow destination cannot take every slot. Defaults to 16
// (capped at the overall concurrency).
func WithTopicConcurrency(n int) Option {
	return func(c *config) error { c.topicConcurrency = n; return positive("WithTopicConcurrency", n) }
}

// WithClaimers sets how many claim loops run side by side, so that claiming
// overlaps the database round trips. Defaults to 2.
func WithClaimers(n int) Option {
	return func(c *config) error { c.claimers = n; return positive("WithClaimers", n) }
}

// WithLease sets how long a claim lasts: a message whose relay died becomes
// claimable again after it. It must exceed the publish timeout. Defaults to
// one minute.
func WithLease(d time.Duration) Option {
	return func(c *config) error { c.lease = d; return positive("WithLease", d) }
}

// WithPublishTimeout bounds one publish; a publish cut off by it is retried.
// Defaults to 15 s.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *config) error { c.publishTimeout = d; return positive("WithPublishTimeout", d) }
}

// WithPollInterval sets how often the relay looks for ready messages when
// nothing woke it. With a Notifier it is the fallback for lost
// notifications; without one (poll-only mode, for connection poolers that
// cannot LISTEN) it bounds the delivery delay. Defaults to 1 s.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) error { c.pollInterval = d; return positive("WithPollInterval", d) }
}

// WithNotifier wakes the relay on commits (sqloutbox.PostgresListener).
// Defaults to none: poll-only.
func WithNotifier(n Notifier) Option {
	return func(c *config) error {
		if n == nil {
			return fmt.Errorf("outbox: WithNotifier: nil Notifier")
		}
		c.notifier = n
		return nil
	}
}

// WithBackoff sets the retry delays after a failed publish: full jitter,
// from base doubling to max, computed by retry.Delay from the message's
// attempt count. Defaults to 1 s and 1 min. Broker deduplication windows
// (JetStream's is 2 min by default) should outlast max.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) error {
		if err := positive("WithBackoff base", base); err != nil {
			return err
		}
		if max < base {
			return fmt.Errorf("outbox: WithBackoff: max %v is below base %v", max, base)
		}
		c.backoffBase, c.backoffMax = base, max
		return nil
	}
}

// WithMaxAttempts sets how many delivery attempts a message gets before it
// becomes a dead letter with its last error. Defaults to 10.
func WithMaxAttempts(n int) Option {
	return func(c *config) error { c.maxAttempts = n; return positive("WithMaxAttempts", n) }
}

// WithMaxRetryAfter caps the delay a publisher asks for with RetryAfter.
// Defaults to one hour.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error { c.maxRetryAfter = d; return positive("WithMaxRetryAfter", d) }
}

// WithPause sets how long a destination is paused when its publisher
// returns ErrPaused without a duration. Defaults to 30 s.
func WithPause(d time.Duration) Option {
	return func(c *config) error { c.pause = d; return positive("WithPause", d) }
}

// WithCleanup sets how long delivered messages are kept and how often the
// relay deletes older ones, in batches of 1,000. Defaults to 24 h and 1 min.
// An interval of 0 turns cleanup off in this relay.
func WithCleanup(retention, interval time.Duration) Option {
	return func(c *config) error {
		if err := positive("WithCleanup retention", retention); err != nil {
			return err
		}
		if interval < 0 {
			return fmt.Errorf("outbox: WithCleanup: negative interval %v", interval)
		}
		c.retention, c.cleanupInterval = retention, interval
		return nil
	}
}

// WithStatsInterval sets how often the relay reads the backlog for its
// gauges. Defaults to 15 s.
func WithStatsInterval(d time.Duration) Option {
	return func(c *config) error { c.statsInterval = d; return positive("WithStatsInterval", d) }
}

// WithClock sets the relay's clock. Defaults to the system clock.
func WithClock(clk Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return fmt.Errorf("outbox: WithClock: nil Clock")
		}
		c.clock = clk
		return nil
	}
}

// WithRand sets the source of backoff jitter. Defaults to math/rand/v2's.
func WithRand(r retry.Rand) Option {
	return func(c *config) error { c.rand = r; return nil }
}

// WithLogger sets the logger. Failures of the store and of the notifier,
// lost leases and dead letters are logged at Warn; single publishes, failed
// or not, only at Debug. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("outbox: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMeterProvider sets where metrics go. Defaults to otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error { c.meterProvider = mp; return nil }
}

// WithTracerProvider sets where publish spans go. Defaults to
// otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error { c.tracerProvider = tp; return nil }
}

func (c *config) finish() error {
	if c.lease <= c.publishTimeout {
		return fmt.Errorf("outbox: WithLease %v must exceed the publish timeout %v", c.lease, c.publishTimeout)
	}
	c.topicConcurrency = min(c.topicConcurrency, c.concurrency)
	if c.meterProvider == nil {
		c.meterProvider = otel.GetMeterProvider()
	}
	if c.tracerProvider == nil {
		c.tracerProvider = otel.GetTracerProvider()
	}
	return nil
}
