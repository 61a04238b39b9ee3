package sqloutbox

import (
	"fmt"
	"regexp"
	"time"

	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// Dialect names the SQL database behind a Store. It is the same type as
// sqlstore.Dialect, so one value names the database to both.
type Dialect = sqldb.Dialect

// The databases a Store runs on.
const (
	// Postgres is PostgreSQL 12 or later through pgx's database/sql driver
	// (github.com/jackc/pgx/v5/stdlib, driver name "pgx"). Pgx users enqueue
	// with EnqueuePgx.
	Postgres = sqldb.Postgres
	// SQLite is modernc.org/sqlite (driver name "sqlite") on a file database
	// in WAL mode; open it with SQLiteDSN.
	SQLite = sqldb.SQLite
	// MySQL is MySQL 8 or MariaDB 10.6 or later (both have SKIP LOCKED)
	// through github.com/go-sql-driver/mysql (driver name "mysql"). Times
	// come from the server (UNIX_TIMESTAMP(NOW(6))); keep the session time
	// zone free of daylight saving (UTC, as servers usually run), or leases
	// may be off by the shift during the repeated hour. Keyed enqueues cost
	// a second round trip (the key lock), and the {table}_keys table keeps
	// one row per key ever used.
	MySQL = sqldb.MySQL
)

const (
	// DefaultTable is the default of WithTable.
	DefaultTable = "steadfast_outbox"
	// MaxNameLen is the longest topic and partition key, in bytes.
	MaxNameLen = 255
)

// SQLiteDSN returns a data source name for modernc.org/sqlite (driver name
// "sqlite") for the database file at path: WAL mode, a 5 s busy timeout,
// full synchronous writes, and every transaction begun IMMEDIATE. path must
// not contain '?' or '#'.
func SQLiteDSN(path string) string { return sqldb.SQLiteDSN(path, 5*time.Second) }

// Option configures a Store.
type Option func(*config) error

type config struct {
	table      string
	maxPayload int
	notify     bool
	durable    bool
	now        func() time.Time
}

var tableName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]{0,47}\.)?[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// WithTable sets the table's name, optionally schema-qualified ("app.outbox"
// on PostgreSQL, a database name on MySQL). Indexes and the MySQL key table
// are named after it. Defaults to DefaultTable.
func WithTable(name string) Option {
	return func(c *config) error {
		if !tableName.MatchString(name) {
			return fmt.Errorf("sqloutbox: WithTable: %q is not a plain SQL identifier (letters, digits, _; up to 48; optional schema)", name)
		}
		c.table = name
		return nil
	}
}

// WithMaxPayload sets the largest payload Enqueue accepts, in bytes.
// Defaults to outbox.DefaultMaxPayload (1 MiB).
func WithMaxPayload(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("sqloutbox: WithMaxPayload must be positive, got %d", n)
		}
		c.maxPayload = n
		return nil
	}
}

// WithoutNotify stops Enqueue from sending a PostgreSQL NOTIFY, for
// deployments whose relays poll (behind a transaction-mode pooler, or when
// the commit rate is so high that NOTIFY's commit-time lock would cost more
// than polling). Defaults to notifying on PostgreSQL; the other dialects
// never notify.
func WithoutNotify() Option {
	return func(c *config) error { c.notify = false; return nil }
}

// WithDurableWriteBacks makes the relay's claims and write-backs on
// PostgreSQL commit synchronously. By default they commit asynchronously
// (synchronous_commit off for those statements only; enqueues are never
// affected): a database crash may then forget the last fraction of a second
// of write-backs, and the messages concerned are delivered again. Delivery is
// at least once either way; asynchronous commits spare a WAL flush per batch.
func WithDurableWriteBacks() Option {
	return func(c *config) error { c.durable = true; return nil }
}

// WithClock sets the clock of the SQLite store, which keeps time itself
// (PostgreSQL and MySQL use the database's clock). Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("sqloutbox: WithClock: nil function")
		}
		c.now = now
		return nil
	}
}
