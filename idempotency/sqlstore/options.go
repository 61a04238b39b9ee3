package sqlstore

import (
	"fmt"
	"regexp"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// Dialect names the SQL database behind a Store. It is the same type as
// sqloutbox.Dialect, so one value names the database to both.
type Dialect = sqldb.Dialect

// The databases a Store runs on.
const (
	// Postgres is PostgreSQL 12 or later through pgx's database/sql driver
	// (github.com/jackc/pgx/v5/stdlib, driver name "pgx").
	Postgres = sqldb.Postgres
	// SQLite is modernc.org/sqlite (driver name "sqlite") on a file database in
	// WAL mode; open it with SQLiteDSN.
	SQLite = sqldb.SQLite
	// MySQL is MySQL 8 or MariaDB 10.5 or later through
	// github.com/go-sql-driver/mysql (driver name "mysql").
	MySQL = sqldb.MySQL
)

// Limits of what a store holds. Longer input is refused with ErrTooLarge,
// never truncated.
const (
	// MaxKeyLen is the longest key, consumer+message id and entity, in bytes.
	MaxKeyLen = 1024
	// MaxFingerprintLen is the longest fingerprint, consumer name and
	// tie-break, in bytes.
	MaxFingerprintLen = 255
	// DefaultMaxResponseSize is the default of WithMaxResponseSize.
	DefaultMaxResponseSize = 4 << 20
	// DefaultTable is the default of WithTable.
	DefaultTable = "steadfast_idempotency"
	// DefaultAbandonedRetention is the default of WithAbandonedRetention.
	DefaultAbandonedRetention = 24 * time.Hour
)

// Option configures a Store.
type Option func(*config) error

type config struct {
	table     string
	now       func() time.Time
	maxResp   int
	abandoned time.Duration
	retry     sqldb.RetryPolicy
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

// WithTable sets the name of the record table; the inbox and ordering tables
// are named after it with the suffixes _inbox and _order. The name must be a
// lower-case SQL identifier of at most 40 characters (letters, digits,
// underscores, not starting with a digit); it is not quoted. Defaults to
// DefaultTable ("steadfast_idempotency").
func WithTable(name string) Option {
	return func(c *config) error {
		if !identRE.MatchString(name) {
			return fmt.Errorf("sqlstore: WithTable(%q): not a lower-case identifier of 1 to 40 characters [a-z0-9_]", name)
		}
		c.table = name
		return nil
	}
}

// WithClock sets the clock the store reads to stamp leases and expiry
// (storetest.Clock is a fake one). Defaults to the system clock.
//
// The store keeps time on the application's clock, not the database's, so
// that tests (and idempotency/storetest) can drive it with a fake clock. All
// replicas sharing a store must therefore have synchronised clocks (NTP);
// leases (seconds to minutes) and retention (hours) are far longer than the
// skew of a synchronised clock.
func WithClock(clock idempotency.Clock) Option {
	return func(c *config) error {
		if clock == nil {
			return fmt.Errorf("sqlstore: WithClock(nil)")
		}
		c.now = clock.Now
		return nil
	}
}

// WithMaxResponseSize sets the largest response Complete stores; a larger
// one is refused with ErrTooLarge. Defaults to DefaultMaxResponseSize (4 MiB).
// On MySQL it must also fit the server's max_allowed_packet.
func WithMaxResponseSize(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("sqlstore: WithMaxResponseSize(%d): must be positive", n)
		}
		c.maxResp = n
		return nil
	}
}

// WithAbandonedRetention sets how long a claim whose lease expired is kept
// before Purge may delete it (and before any claimer, whatever its
// fingerprint, may take the key). Until then only a claimer with the same
// fingerprint takes it over. Defaults to DefaultAbandonedRetention (24 h).
func WithAbandonedRetention(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("sqlstore: WithAbandonedRetention(%v): must be positive", d)
		}
		c.abandoned = d
		return nil
	}
}

// WithRetryAttempts sets how many times an operation is tried when the
// database aborts it with a deadlock (MySQL/MariaDB 1213, PostgreSQL 40P01),
// a lock wait timeout or SQLite busy. Every such retry re-runs a whole
// transaction that the database rolled back, so it never doubles an effect.
// Defaults to 8; 1 disables retries.
func WithRetryAttempts(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("sqlstore: WithRetryAttempts(%d): must be positive", n)
		}
		c.retry.Attempts = n
		return nil
	}
}
