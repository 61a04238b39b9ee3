package sqldb

import (
	"context"
	"database/sql"
)

// Tx is the part of a transaction or connection that the SQL backends use.
// *sql.Tx, *sql.Conn and *sql.DB satisfy it, and so do sqlx's and bun's
// transaction types. A backend given a Tx runs its statements there and never
// commits or rolls back: that stays with the caller.
type Tx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

var (
	_ Tx = (*sql.Tx)(nil)
	_ Tx = (*sql.Conn)(nil)
	_ Tx = (*sql.DB)(nil)
)
