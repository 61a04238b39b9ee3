package sqlstore

import (
	"time"

	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// SQLiteDSN returns a data source name for modernc.org/sqlite (driver name
// "sqlite") for the database file at path, in WAL mode with a 5 s busy
// timeout, full synchronous writes, and every transaction begun IMMEDIATE so
// that a transaction never fails to upgrade its read lock to a write lock.
// path must not contain '?' or '#'.
func SQLiteDSN(path string) string {
	return sqldb.SQLiteDSN(path, 5*time.Second)
}
