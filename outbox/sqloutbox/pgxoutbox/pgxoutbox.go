package pgxoutbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// Enqueue writes msgs in tx, the caller's pgx transaction (a pgx.Tx, or a
// pgxpool.Tx), exactly as store.Enqueue does in a database/sql transaction:
// same validation, same per-key locks, same NOTIFY at commit. It never
// commits or rolls back tx. It returns an error for a nil store or tx and
// for a store whose dialect is not steadfast.Postgres.
func Enqueue(ctx context.Context, store *sqloutbox.Store, tx pgx.Tx, msgs ...outbox.Message) error {
	if store == nil {
		return errors.New("pgxoutbox: Enqueue: store is nil")
	}
	if d := store.Dialect(); d != steadfast.Postgres {
		return fmt.Errorf("pgxoutbox: Enqueue: the store's dialect is %v, not postgres", d)
	}
	if tx == nil {
		return errors.New("pgxoutbox: Enqueue: transaction is nil")
	}
	return store.Enqueue(ctx, pgxTx{tx}, msgs...)
}

// pgxTx presents a pgx.Tx as the steadfast.Tx that sqloutbox's Enqueue
// takes. On PostgreSQL Enqueue runs only ExecContext (its documentation says
// so, and this package's tests hold it to it); the other methods are there
// to satisfy the interface.
type pgxTx struct{ tx pgx.Tx }

var errNotServed = errors.New("pgxoutbox: not served through a pgx transaction")

func (t pgxTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return result(tag), nil
}

func (t pgxTx) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errNotServed
}

func (t pgxTx) QueryRowContext(context.Context, string, ...any) *sql.Row { return nil }

func (t pgxTx) Commit() error   { return t.tx.Commit(context.Background()) }
func (t pgxTx) Rollback() error { return t.tx.Rollback(context.Background()) }

type result pgconn.CommandTag

func (r result) LastInsertId() (int64, error) { return 0, errNotServed }
func (r result) RowsAffected() (int64, error) { return pgconn.CommandTag(r).RowsAffected(), nil }
