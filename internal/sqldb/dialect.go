package sqldb

import "fmt"

// Dialect names the SQL database behind a store. The SQL backends re-export
// it (sqlstore.Dialect, sqloutbox.Dialect are this type), so one value names
// the database to both.
type Dialect uint8

// The databases the SQL backends support.
const (
	// Postgres is PostgreSQL through pgx's database/sql driver
	// (github.com/jackc/pgx/v5/stdlib, driver name "pgx").
	Postgres Dialect = iota + 1
	// SQLite is modernc.org/sqlite (driver name "sqlite") on a file database
	// in WAL mode.
	SQLite
	// MySQL is MySQL or MariaDB through github.com/go-sql-driver/mysql
	// (driver name "mysql").
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
