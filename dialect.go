package steadfast

import (
	"fmt"
	"net/url"
	"strconv"
)

// Dialect names the SQL database behind a store. One value names the database
// to every SQL package (idempotency/sqlstore, outbox/sqloutbox,
// catchup/sqlcatchup, housekeeping). The packages import no driver: the
// application imports the one it uses.
type Dialect uint8

// The databases the SQL packages support.
const (
	// Postgres is PostgreSQL 12 or later through pgx's database/sql driver
	// (github.com/jackc/pgx/v5/stdlib, driver name "pgx").
	Postgres Dialect = iota + 1
	// SQLite is modernc.org/sqlite (driver name "sqlite") on a file database,
	// opened with SQLiteDSN.
	SQLite
	// MySQL is MariaDB 10.6 or later, or MySQL 8.0 or later, through
	// github.com/go-sql-driver/mysql (driver name "mysql").
	MySQL
)

// String returns "postgres", "sqlite" or "mysql".
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	case MySQL:
		return "mysql"
	default:
		return fmt.Sprintf("Dialect(%d)", uint8(d))
	}
}

// SQLiteDSN returns a modernc.org/sqlite data source name for the database
// file at path, set up the way the SQL packages need it: WAL journal (readers
// do not block the writer), a 5 s busy timeout (a writer waits for the lock
// instead of failing), immediate transactions (a transaction takes the write
// lock when it begins, so it never fails to upgrade a read lock), foreign keys
// on and synchronous=FULL (durable). Open it with
// sql.Open("sqlite", steadfast.SQLiteDSN(path)) after importing
// modernc.org/sqlite.
func SQLiteDSN(path string) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.Itoa(5000))
	q.Set("_journal_mode", "WAL")
	q.Set("_txlock", "immediate")
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", "FULL")
	return "file:" + path + "?" + q.Encode()
}
