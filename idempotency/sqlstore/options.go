package sqlstore

import (
	"fmt"
	"time"

	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// Limits of what a store holds (the idempotency.Store limits, and those of
// the inbox and ordering guard). Longer input is refused with an error
// wrapping idempotency.ErrTooLarge, never truncated.
const (
	// maxKeyLen is the longest key, message id and entity, in bytes.
	maxKeyLen = 1024
	// maxShortLen is the longest fingerprint, consumer name and tie-break,
	// in bytes.
	maxShortLen = 255
)

// Option configures a Store. Options are made by the With functions of this
// package; New refuses, with an error naming it, an option that is invalid.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

func applyOptions(c *config, opts []Option) error {
	return option.Apply("sqlstore", "New", c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

type config struct {
	table     sqldb.Table
	maxResp   int
	abandoned time.Duration
	retry     sqldb.RetryPolicy
}

// tableSuffixes are what the store appends to the table's name: its other
// tables and its indexes.
var tableSuffixes = []string{"_inbox", "_order", "_claim", "_expires_idx", "_inbox_processed_idx"}

// WithTable sets the name of the record table, "name" or "schema.name"
// (each part an unquoted SQL identifier, [A-Za-z_][A-Za-z0-9_]{0,62}; the
// name short enough that name_inbox_processed_idx fits 63 bytes); the inbox
// and ordering tables are named after it with the suffixes _inbox and
// _order, in the same schema. Defaults to "steadfast_idempotency".
func WithTable(name string) Option {
	return newOption("WithTable", func(c *config) error {
		t, err := sqldb.ParseTable(name, tableSuffixes...)
		if err != nil {
			return err
		}
		c.table = t
		return nil
	})
}

// WithMaxResponseSize sets the largest response Complete stores; a larger
// one is refused with an error wrapping idempotency.ErrTooLarge (the
// middleware then stores a marker, so that retries get a clear answer
// rather than a rerun). Defaults to 4 MiB. On MySQL it must also fit the
// server's max_allowed_packet.
func WithMaxResponseSize(n int) Option {
	return newOption("WithMaxResponseSize", func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%d is not positive", n)
		}
		c.maxResp = n
		return nil
	})
}

// WithAbandonedRetention sets how long a claim whose lease expired is kept
// before Purge may delete it (and before any claimer, whatever its
// fingerprint, may take the key). Until then only a claimer with the same
// fingerprint takes it over. Defaults to 24h.
func WithAbandonedRetention(d time.Duration) Option {
	return newOption("WithAbandonedRetention", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%v is not positive", d)
		}
		c.abandoned = d
		return nil
	})
}

// WithRetryAttempts sets how many times an operation is tried when the
// database aborts it with a deadlock (MySQL/MariaDB 1213, PostgreSQL 40P01),
// a lock wait timeout or SQLite busy. Every such retry re-runs a whole
// transaction that the database rolled back, so it never doubles an effect.
// Defaults to 8; 1 disables retries.
func WithRetryAttempts(n int) Option {
	return newOption("WithRetryAttempts", func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%d is not positive", n)
		}
		c.retry.Attempts = n
		return nil
	})
}
