package sqldb

import "github.com/steadfast-go/steadfast"

// Dialect is steadfast.Dialect, named here for the SQL packages' internals.
type Dialect = steadfast.Dialect

// The databases the SQL packages support (steadfast.Postgres, ...).
const (
	Postgres = steadfast.Postgres
	SQLite   = steadfast.SQLite
	MySQL    = steadfast.MySQL
)
