package idempotency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// TxStore is a Store that can run a request's handler in a database
// transaction of its own, holding the claim (SQL stores).
type TxStore interface {
	Store
	// BeginTx begins a transaction. With key != "" it claims key in it as
	// Claim does; when the claim is acquired it takes a savepoint after
	// the claim (issue 12). With key == "" it claims nothing (a keyless
	// request in transactional mode still gets a transaction). A key
	// whose row is locked by another live transaction is reported at
	// once (bounded lock wait, issue 12) as Claim{Acquired: false} with
	// Record.Status StatusInProgress. ctx is detached from the client by
	// the caller and bounded by the maximum transaction duration.
	BeginTx(ctx context.Context, key, fingerprint string, lease time.Duration) (ClaimTx, Claim, error)
}

// ClaimTx is a transaction begun by a TxStore.
type ClaimTx interface {
	// SQL is the transaction the handler writes in; TxFrom returns it.
	SQL() *sql.Tx
	// Commit stores response under the claimed key (if any) and commits.
	// With discard, it first rolls back to the savepoint taken after the
	// claim, undoing the handler's writes (final answers that refuse the
	// request: 400 and above; a 3xx, the outcome of work done, keeps them). When the transaction or the savepoint is lost it stores
	// nothing, rolls back, and returns an error wrapping ErrTxLost.
	// A response the store refuses as too large is refused before
	// anything else, with an error wrapping ErrTooLarge, and leaves the
	// transaction as it was: the caller commits a smaller one (the
	// middleware's marker) or rolls back.
	Commit(ctx context.Context, response []byte, retention time.Duration, discard bool) error
	// Rollback rolls everything back, the claim included.
	Rollback(ctx context.Context) error
}

var (
	// ErrNoTx is returned, wrapped, by TxFrom where the work runs without a
	// transaction.
	ErrNoTx = errors.New("idempotency: no transaction in this request's context")

	// ErrTxLost is returned, wrapped, by ClaimTx.Commit when the
	// transaction, or the savepoint taken after the claim, was lost before
	// the commit (a statement of the work aborted a PostgreSQL transaction,
	// MariaDB rolled it back after a deadlock, SQLite after an I/O error):
	// nothing was stored and the claim is released, so that a retry runs
	// the work again.
	ErrTxLost = errors.New("idempotency: transaction lost")
)

// errNoTx is what TxFrom returns: ErrNoTx, with the way out.
var errNoTx = fmt.Errorf("%w: build the middleware (or Runner) with WithTransaction and a store that supports it (sqlstore)", ErrNoTx)

type txKey struct{}

// withTx returns a copy of ctx that carries tx.
func withTx(ctx context.Context, tx ClaimTx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFrom returns the transaction that Middleware or Do began for the work
// running with ctx (transactional mode, WithTransaction): the handler's or
// function's own writes go in it, and commit together with its stored
// result. Where there is none, it returns an error wrapping ErrNoTx that
// says how to get one.
//
// The rules of a transactional request:
//
//   - The transaction is begun before the work runs, with the claim of the
//     key in it, and a savepoint right after the claim. A request without a
//     key (WithOptionalKey) gets a transaction too, without a claim.
//   - A final answer below 400 (2xx, 3xx; a value returned by Do) is
//     stored, and committed with the work's writes.
//   - A final answer of 400 or more (a refusal; an error marked Final in
//     Do) is stored too, but the work's writes are first rolled back to the
//     savepoint: a refused request leaves no half-done writes, on every
//     database alike. A handler whose own statement failed (a unique
//     violation that aborted a PostgreSQL transaction) and that answers 422
//     therefore has its 422 stored and replayed.
//   - An answer that is not final (5xx, 408, 409, 429, a panic; an error
//     not marked Final) rolls everything back, the claim included, so that
//     a retry runs the work again.
//   - When the transaction itself is lost before the commit (a 2xx over an
//     aborted PostgreSQL transaction, a MariaDB deadlock, an SQLite
//     automatic rollback), nothing is stored, the key is released and the
//     middleware answers 503 (Do returns an error wrapping ErrTxLost), so a
//     retry runs the work again.
//   - The transaction is detached from the client: a handler that finished
//     has its answer committed even if the client left. It is bounded by
//     WithMaxTxDuration.
//   - A duplicate that arrives while the work runs does not wait on the
//     claim's row lock: it gets 409 at once (or, with WithWait, a bounded
//     wait and the replay). On SQLite, whose transactions hold the one write
//     lock of the database, requests in transactional mode run one at a
//     time; duplicates in the same process still get 409 at once.
//
// Write with the transaction on the request's context (r.Context()), so
// that a statement stops when the client leaves; the commit does not.
func TxFrom(ctx context.Context) (*sql.Tx, error) {
	if tx, ok := ctx.Value(txKey{}).(ClaimTx); ok {
		if s := tx.SQL(); s != nil {
			return s, nil
		}
	}
	return nil, errNoTx
}
