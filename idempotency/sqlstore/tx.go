package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// BeginTx implements idempotency.TxStore: it begins a transaction on the
// store's database and claims key in it. When the claim is Acquired, the
// returned transaction is open; its SQL method returns the *sql.Tx for the
// caller's own writes (idempotency.TxFrom, in the middleware and Do), and
// Commit completes the record and commits them together. When the claim is
// not Acquired the transaction is rolled back and none is returned. With
// key "" it claims nothing and returns the open transaction (a request
// without a key); Commit then only commits.
//
// On SQLite the transaction holds the database's single write lock until it
// ends (open the database with SQLiteDSN, which begins every transaction
// IMMEDIATE): keep transactional handlers short there.
//
// The claim in an open transaction is held by its row lock, not its lease:
// do not Renew it. Deadlocks and busy errors while claiming are retried with
// a new transaction.
func (s *Store) BeginTx(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.ClaimTx, idempotency.Claim, error) {
	if key == "" {
		tx, err := s.begin(ctx)
		if err != nil {
			return nil, idempotency.Claim{}, fmt.Errorf("sqlstore: begin: %w", err)
		}
		return &claimTx{s: s, tx: tx}, idempotency.Claim{}, nil
	}
	if err := checkClaim(key, fingerprint, lease); err != nil {
		return nil, idempotency.Claim{}, err
	}
	var (
		tx *sql.Tx
		c  idempotency.Claim
	)
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		tx, err = s.begin(ctx)
		if err != nil {
			return fmt.Errorf("sqlstore: begin: %w", err)
		}
		c, err = s.claimOn(ctx, tx, key, fingerprint, lease)
		if err == nil && c.Acquired {
			// The handler's writes start here: a refusal rolls back to it.
			if _, err = tx.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
				err = fmt.Errorf("sqlstore: savepoint: %w", err)
			}
		}
		if err != nil || !c.Acquired {
			_ = tx.Rollback()
			tx = nil
		}
		return err
	})
	if err != nil {
		return nil, idempotency.Claim{}, err
	}
	if !c.Acquired {
		return nil, c, nil
	}
	return &claimTx{s: s, tx: tx, key: key, token: c.Token}, c, nil
}

// begin begins a transaction. A failure to begin, where nothing ran yet,
// is tried again at once on another connection: after the database
// restarted, every pooled connection is broken, and each failure drops the
// one it happened on, so it is tried at most once more than the pool holds
// idle connections. A deadlock or busy error is left to the caller's retry
// policy (sqldb.Retry), which waits between tries.
func (s *Store) begin(ctx context.Context) (*sql.Tx, error) {
	tries := s.db.Stats().Idle + 1
	for i := 0; ; i++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err == nil || i == tries || ctx.Err() != nil || sqldb.IsRetryable(err) {
			return tx, err
		}
	}
}

// savepoint is the name of the savepoint BeginTx takes after the claim.
const savepoint = "steadfast_claim"

// claimTx is an open transaction holding a claim taken by BeginTx. It is
// not safe for concurrent use (neither is *sql.Tx).
type claimTx struct {
	s     *Store
	tx    *sql.Tx
	key   string
	token int64
}

var _ idempotency.ClaimTx = (*claimTx)(nil)

func (t *claimTx) SQL() *sql.Tx { return t.tx }

// Commit completes the claim with response, kept for retention, and commits
// the transaction; with discard, it first rolls back to the savepoint taken
// after the claim, undoing the caller's writes (see idempotency.TxFrom). A
// response over WithMaxResponseSize is refused at once
// (idempotency.ErrTooLarge) with the transaction left open. When the
// transaction or its savepoint is lost (an aborted PostgreSQL transaction, a
// MySQL/MariaDB deadlock that rolled it back, an SQLite automatic rollback,
// which leave the claim gone or unusable), it stores nothing, rolls back and
// returns an error wrapping idempotency.ErrTxLost. If completing fails
// otherwise, the transaction is rolled back too. If the commit itself fails,
// its error is returned: after a lost connection the outcome is unknown,
// and Get tells.
func (t *claimTx) Commit(ctx context.Context, response []byte, retention time.Duration, discard bool) error {
	if t.key != "" && len(response) > t.s.cfg.maxResp {
		// Before anything else, so that the caller can commit a smaller
		// one.
		return fmt.Errorf("sqlstore: %w: response is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(response), t.s.cfg.maxResp)
	}
	if t.key == "" {
		if discard {
			return rollback(t.tx)
		}
	} else {
		if discard {
			if _, err := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+savepoint); err != nil {
				return t.lost(err)
			}
		}
		err := t.s.completeOn(ctx, t.tx, t.key, t.token, response, retention)
		switch {
		case errors.Is(err, idempotency.ErrLeaseLost):
			// The claim was this transaction's own row: it is gone only
			// if the transaction is.
			return t.lost(err)
		case sqldb.IsTxAborted(err):
			return t.lost(err)
		case err != nil:
			return errors.Join(err, rollback(t.tx))
		}
	}
	if err := t.tx.Commit(); err != nil {
		if sqldb.IsTxAborted(err) {
			return t.lost(err)
		}
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	return nil
}

// lost rolls back what is left of a transaction found lost by err.
func (t *claimTx) lost(err error) error {
	return errors.Join(fmt.Errorf("sqlstore: %w: %w", idempotency.ErrTxLost, err), rollback(t.tx))
}

// Rollback rolls the transaction back: the claim and everything written in
// the transaction are undone, and the next claimer runs the work again.
func (t *claimTx) Rollback(ctx context.Context) error {
	return rollback(t.tx)
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("sqlstore: rollback: %w", err)
	}
	return nil
}

// ClaimIn claims key inside tx, a transaction the caller began and will end
// (a *sql.Tx, or sqlx's or bun's transaction types), with the semantics of
// idempotency.Store.Claim. Complete it in the same transaction with
// CompleteIn before committing. A deadlock or busy error aborts the caller's
// transaction and is returned as is: the caller retries the whole
// transaction.
func (s *Store) ClaimIn(ctx context.Context, tx steadfast.Tx, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	if tx == nil {
		return idempotency.Claim{}, errors.New("sqlstore: ClaimIn: nil transaction")
	}
	if err := checkClaim(key, fingerprint, lease); err != nil {
		return idempotency.Claim{}, err
	}
	return s.claimOn(ctx, tx, key, fingerprint, lease)
}

// CompleteIn completes, inside tx, the claim that ClaimIn took there. It
// returns idempotency.ErrLeaseLost if key is not held with token, and an
// error wrapping idempotency.ErrTooLarge if response exceeds
// WithMaxResponseSize.
func (s *Store) CompleteIn(ctx context.Context, tx steadfast.Tx, key string, token int64, response []byte, retention time.Duration) error {
	if tx == nil {
		return errors.New("sqlstore: CompleteIn: nil transaction")
	}
	return s.completeOn(ctx, tx, key, token, response, retention)
}
