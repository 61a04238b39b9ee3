package idempotency

import (
	"context"
	"time"
)

// TxStore is a Store that can also claim a key inside a database transaction
// that carries the caller's own writes, so that the record and those writes
// commit or roll back together (one commit per request). The SQL stores in
// idempotency/sqlstore implement it. While the transaction is open, the
// claim's row lock holds concurrent claimers of the same key until it ends;
// they then see the completed record and replay it, or, after a rollback,
// claim the key themselves.
type TxStore interface {
	Store
	// ClaimTx begins a transaction and claims key in it, with the semantics
	// of Store.Claim. When the returned Claim is Acquired, the returned Tx is
	// open and holds the claim; otherwise Tx is nil and nothing is left open.
	ClaimTx(ctx context.Context, key, fingerprint string, lease time.Duration) (Tx, Claim, error)
}

// Tx is an open transaction that holds a claim taken by TxStore.ClaimTx.
// Exactly one of Commit or Rollback must be called.
type Tx interface {
	// Driver returns the driver's transaction for the caller's writes: a
	// *sql.Tx for the database/sql stores, a pgx.Tx for the pgx one.
	Driver() any
	// Commit stores response as the key's final result, kept for retention,
	// and commits the transaction with everything the caller wrote in it.
	Commit(ctx context.Context, response []byte, retention time.Duration) error
	// Rollback undoes the claim and everything the caller wrote in the
	// transaction; the next claimer runs the work again.
	Rollback(ctx context.Context) error
}

type txKey struct{}

// WithTx returns a copy of ctx that carries tx. The middleware and Do call it
// before they run the caller's work in transactional mode.
func WithTx(ctx context.Context, tx Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFrom returns the transaction that the middleware or Do opened for the
// work running with ctx, or nil outside transactional mode. Backends offer
// typed accessors on top of it (sqlstore.TxFrom returns the *sql.Tx).
func TxFrom(ctx context.Context) Tx {
	tx, _ := ctx.Value(txKey{}).(Tx)
	return tx
}
