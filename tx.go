package steadfast

import (
	"context"
	"database/sql"
)

// Tx is the caller's database transaction, as the SQL backends take it
// (idempotency/sqlstore, outbox/sqloutbox): their statements run in it, and
// commit or roll back with the caller's own writes. *sql.Tx satisfies it, and
// so do sqlx's *sqlx.Tx and bun's bun.Tx. *sql.DB and *sql.Conn do not, on
// purpose: a write that should be atomic with the caller's writes cannot be
// handed a connection outside any transaction by mistake.
//
// A backend never calls Commit or Rollback on a Tx it was given: they are in
// the interface only so that a transaction is all that satisfies it.
type Tx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	Commit() error
	Rollback() error
}

var _ Tx = (*sql.Tx)(nil)
