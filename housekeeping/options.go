package housekeeping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// Option configures a Sweeper. Options are made by the With functions of
// this package; New refuses, with an error naming it, an option that is
// invalid.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

func applyOptions(c *config, opts []Option) error {
	return option.Apply("housekeeping", "New", c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

const (
	defaultInterval = 5 * time.Minute
	defaultLease    = time.Minute
	defaultBatch    = 1000
	defaultTable    = "steadfast_housekeeping"
	maxBatch        = 100_000
)

// The kinds of rows, as the steadfast.housekeeping.removed metric and the logs name
// them.
const (
	kindIdempotency = "idempotency_records"
	kindInbox       = "inbox"
	kindGuard       = "ordering_guard"
	kindDelivered   = "outbox_delivered"
	kindDead        = "outbox_dead_letters"
	kindCatchup     = "catchup_failing"
)

// task is one kind of rows to remove: purge removes at most batch rows that
// are past their time and says how many it removed.
type task struct {
	kind      string
	retention time.Duration // 0: the store's own
	purge     func(ctx context.Context, batch int) (int64, error)
}

type config struct {
	tasks    []task
	interval time.Duration
	lease    time.Duration
	batch    int
	table    sqldb.Table
	logger   *slog.Logger
	meter    metric.MeterProvider
}

func defaults() config {
	return config{
		interval: defaultInterval,
		lease:    defaultLease,
		batch:    defaultBatch,
		table:    sqldb.Table{Name: defaultTable},
		logger:   slog.Default(),
		meter:    otel.GetMeterProvider(),
	}
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

func positive(what string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s %v must be positive", what, d)
	}
	return nil
}

// WithIdempotency removes store's expired idempotency records: completed
// records past the retention they were stored with, and claims abandoned
// (lease run out, never completed) past the store's abandoned-claim
// retention (sqlstore.WithAbandonedRetention). A claim whose lease is live
// is never removed. store must not be nil. Off by default.
func WithIdempotency(store IdempotencyStore) Option {
	return newOption("WithIdempotency", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		c.tasks = append(c.tasks, task{kind: kindIdempotency, purge: store.Purge})
		return nil
	})
}

// WithInbox removes store's inbox rows processed more than retention ago.
// The retention must outlast every way a message can come back: the
// provider's retry horizon (about three days for Stripe), a broker's
// redelivery or dedup window, and the catch-up overlap window; a row
// removed earlier lets a late duplicate run its effect again. Seven days is
// a sane start. retention must be positive and store not nil. Off by
// default: inbox rows stay forever without it.
func WithInbox(store InboxStore, retention time.Duration) Option {
	return newOption("WithInbox", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		if err := positive("retention", retention); err != nil {
			return err
		}
		c.tasks = append(c.tasks, task{kind: kindInbox, retention: retention,
			purge: func(ctx context.Context, batch int) (int64, error) {
				return store.PurgeInbox(ctx, retention, batch)
			}})
		return nil
	})
}

// WithOutbox removes store's messages delivered more than retention ago
// (a day is common: long enough to look a delivery up). Pending, claimed
// and dead messages are never removed by it. This is the outbox's only
// cleanup of delivered messages. retention must be positive and store not
// nil. Off by default: delivered messages stay forever without it.
func WithOutbox(store OutboxStore, retention time.Duration) Option {
	return newOption("WithOutbox", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		if err := positive("retention", retention); err != nil {
			return err
		}
		c.tasks = append(c.tasks, task{kind: kindDelivered, retention: retention,
			purge: func(ctx context.Context, batch int) (int64, error) {
				n, err := store.Cleanup(ctx, retention, batch)
				return int64(n), err
			}})
		return nil
	})
}

// WithDeadLetters removes store's dead letters that became dead more than
// retention ago, whether or not anyone looked at them. retention must be
// positive and store not nil. Off by default: dead letters stay until an
// operator requeues or discards them.
func WithDeadLetters(store DeadLetterStore, retention time.Duration) Option {
	return newOption("WithDeadLetters", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		if err := positive("retention", retention); err != nil {
			return err
		}
		c.tasks = append(c.tasks, task{kind: kindDead, retention: retention,
			purge: func(ctx context.Context, batch int) (int64, error) {
				n, err := store.CleanupDead(ctx, retention, batch)
				return int64(n), err
			}})
		return nil
	})
}

// WithOrderingGuard removes store's ordering-guard rows (the last version
// or timestamp applied per entity) not updated for retention.
//
// Warning: the guard exists to drop late, stale events. Once an entity's
// row is removed, the next event for it is applied whatever its version,
// so a stale event that arrives after the removal (a provider's retry, a
// catch-up page) overwrites newer state. Use it only when no event can
// arrive later than retention after the entity last changed (retention
// well beyond the provider's retry horizon and the catch-up overlap), or
// when entities are never updated once they go quiet. retention must be
// positive and store not nil. Off by default.
func WithOrderingGuard(store GuardStore, retention time.Duration) Option {
	return newOption("WithOrderingGuard", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		if err := positive("retention", retention); err != nil {
			return err
		}
		c.tasks = append(c.tasks, task{kind: kindGuard, retention: retention,
			purge: func(ctx context.Context, batch int) (int64, error) {
				return store.PurgeGuard(ctx, retention, batch)
			}})
		return nil
	})
}

// WithCatchup removes store's records of catch-up events whose handler
// failed and that were neither applied since nor made dead letters (the
// event left the provider's list), not updated for retention. Dead letters
// are never removed by it. retention must be positive (a week is a sane
// start) and store not nil. Off by default.
func WithCatchup(store CatchupStore, retention time.Duration) Option {
	return newOption("WithCatchup", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		if err := positive("retention", retention); err != nil {
			return err
		}
		c.tasks = append(c.tasks, task{kind: kindCatchup, retention: retention,
			purge: func(ctx context.Context, batch int) (int64, error) {
				return store.PurgeFailing(ctx, retention, batch)
			}})
		return nil
	})
}

// WithInterval sets how often a pass runs: one replica sweeps once per
// interval, whichever holds the lease. d must be at least a second.
// Defaults to 5 minutes.
func WithInterval(d time.Duration) Option {
	return newOption("WithInterval", func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("interval %v must be at least 1s", d)
		}
		c.interval = d
		return nil
	})
}

// WithLease sets how long the lease of a replica that is sweeping lasts
// between renewals. It is renewed after every batch, so it must exceed the
// time of the slowest batch; if it runs out, another replica may sweep at
// the same time (harmless: nothing is removed twice). d must be at least a
// second. Defaults to 1 minute.
func WithLease(d time.Duration) Option {
	return newOption("WithLease", func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("lease %v must be at least 1s", d)
		}
		c.lease = d
		return nil
	})
}

// WithBatchSize sets the most rows one statement removes. Each batch is a
// statement of its own, so it holds few locks for a short time while the
// application goes on. n must be between 1 and 100000. Defaults to 1000.
func WithBatchSize(n int) Option {
	return newOption("WithBatchSize", func(c *config) error {
		if n < 1 || n > maxBatch {
			return fmt.Errorf("batch size %d must be between 1 and %d", n, maxBatch)
		}
		c.batch = n
		return nil
	})
}

// WithTable names the lease table: "name" or "schema.name", each part an
// identifier [A-Za-z_][A-Za-z0-9_]{0,62}. Sweepers that share the table
// share one lease, so give every replica the same options. Defaults to
// "steadfast_housekeeping".
func WithTable(name string) Option {
	return newOption("WithTable", func(c *config) error {
		t, err := sqldb.ParseTable(name)
		if err != nil {
			return err
		}
		c.table = t
		return nil
	})
}

// WithLogger sets the logger: a pass that removed rows is logged at Info,
// one that removed nothing at Debug, failures at Warn. l must not be nil.
// Defaults to slog.Default().
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
		c.meter = mp
		return nil
	})
}
