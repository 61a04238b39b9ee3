package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
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
// A duplicate never queues on the claim's row lock: a key held by another
// live transaction (a request with it still running) is reported at once as
// in progress, not acquired. The claim waits at most 20ms for the row's lock
// (PostgreSQL's lock_timeout; MariaDB's SET STATEMENT
// innodb_lock_wait_timeout=0; MySQL 8's SET_VAR hint, whose least wait is
// a second), and a key held by a transaction of this Store is reported
// without touching the database. A claim that ran out of that wait on
// another lock than the key's row (a new key's insert can wait for a gap
// lock next to it, or for the lock that extends the table) is tried again,
// in a new transaction, for up to about 0.2s before the key is reported in
// progress.
//
// On SQLite the transaction holds the database's single write lock until it
// ends (open the database with SQLiteDSN, which begins every transaction
// IMMEDIATE): requests in transactional mode run one at a time there, and
// wait for the lock up to the busy timeout; a duplicate of a request that
// runs in this process still gets its answer at once. Keep transactional
// handlers short there.
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
	busy := idempotency.Claim{Record: idempotency.Record{
		// The holder's record is not visible until it commits: report it
		// as this claimer would have found it, in progress.
		Key: key, Fingerprint: fingerprint, Status: idempotency.StatusInProgress, TTL: lease,
	}}
	if !s.inflight.add(key) {
		// Held by a transaction of this store: in progress, without a
		// connection.
		return nil, busy, nil
	}
	var (
		tx *sql.Tx
		c  idempotency.Claim
	)
	err := s.retry(ctx, func(ctx context.Context) error {
		for waits := 0; ; waits++ {
			var err error
			tx, err = s.begin(ctx)
			if err != nil {
				return fmt.Errorf("sqlstore: begin: %w", err)
			}
			c, err = s.claimNoWait(ctx, tx, key, fingerprint, lease)
			again := false
			if sqldb.IsLockTimeout(err) {
				var held bool
				if held, err = s.heldElsewhere(ctx, tx, key, err); err == nil {
					if held || waits == maxLockWaits-1 {
						// Another live transaction holds the key's row: in
						// progress.
						c = busy
					} else {
						again = true
					}
				}
			}
			if err == nil && c.Acquired {
				// The handler's writes start here: a refusal rolls back to
				// it.
				err = s.afterClaim(ctx, tx)
			}
			if err != nil || !c.Acquired {
				_ = tx.Rollback()
				tx = nil
			}
			if !again {
				return err
			}
			if err := pause(ctx, waits); err != nil {
				return fmt.Errorf("sqlstore: claim: %w", err)
			}
		}
	})
	if err != nil || !c.Acquired {
		s.inflight.remove(key)
		if err != nil {
			return nil, idempotency.Claim{}, err
		}
		return nil, c, nil
	}
	return &claimTx{s: s, tx: tx, key: key, token: c.Token}, c, nil
}

// lockWait is how long a claim in a transaction waits for another
// transaction's lock on the key's row before it reports the key in
// progress.
const lockWait = 20 * time.Millisecond

// claimNoWait claims key in tx without queueing on the row lock of another
// transaction that holds it: the wait is bounded (PostgreSQL's lock_timeout,
// MariaDB's SET STATEMENT innodb_lock_wait_timeout, MySQL's SET_VAR hint),
// and a lock that does not come gives an error for which
// sqldb.IsLockTimeout is true. SQLite needs no bound: the transaction holds
// the database's one write lock from its start.
func (s *Store) claimNoWait(ctx context.Context, tx *sql.Tx, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	switch s.dialect {
	case steadfast.Postgres:
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", lockWait.Milliseconds())); err != nil {
			return idempotency.Claim{}, fmt.Errorf("sqlstore: lock_timeout: %w", err)
		}
	case steadfast.MySQL:
		q, err := s.mysqlClaimNoWait(ctx, tx)
		if err != nil {
			return idempotency.Claim{}, err
		}
		return s.claimOn(ctx, tx, q, key, fingerprint, lease)
	}
	return s.claimOn(ctx, tx, "", key, fingerprint, lease)
}

// afterClaim ends the bounded lock wait of claimNoWait and takes the
// savepoint.
func (s *Store) afterClaim(ctx context.Context, tx *sql.Tx) error {
	stmt := "SAVEPOINT " + savepoint
	if s.dialect == steadfast.Postgres {
		// One round trip: pgx sends a statement without arguments by the
		// simple protocol, which takes several.
		stmt = "SET LOCAL lock_timeout TO DEFAULT; " + stmt
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("sqlstore: savepoint: %w", err)
	}
	return nil
}

// maxLockWaits bounds the claims of one key in BeginTx that ran out of their
// lock wait on a lock other than the key's row (see heldElsewhere). A key
// still not claimed after them is reported in progress.
const maxLockWaits = 10

// heldElsewhere tells, after the claim of key in tx ran out of its lock
// wait, whether the lock it waited for was the key's row, held by another
// live transaction (the key is in progress), or another lock, which the
// claim of a new key can also wait for and which no one holds as long as a
// request runs (the claim is tried again). err is the claim's error.
//
// MariaDB: the claim waits for no lock at all, and inserting a new key
// waits for a gap lock that another transaction holds next to it (a page
// split hands the record locks of the new right page's first row to the end
// of the left page as a gap lock): a locking read of exactly the key's row,
// which waits for no gap, tells. PostgreSQL (a 20ms wait): a new key's
// insert can wait as long for the lock that extends the table or its index
// on a loaded server; the error's context tells a wait on the key's row (or
// on the transaction that inserted it) from one on such a lock
// (sqldb.WaitedOnRow). MySQL 8: its claim waited a second, longer than
// anyone holds another lock: the key is held.
func (s *Store) heldElsewhere(ctx context.Context, tx *sql.Tx, key string, err error) (bool, error) {
	switch s.dialect {
	case steadfast.Postgres:
		onRow, ok := sqldb.WaitedOnRow(err)
		return onRow || !ok, nil
	case steadfast.MySQL:
		if q := s.noWaitClaim.Load(); q == nil || !strings.HasPrefix(*q, mariaDBNoWait) {
			return true, nil
		}
		// REPEATABLE READ: when the key has no row, this takes a gap lock
		// too, which the rollback before the next claim lets go.
		rows, err := tx.QueryContext(ctx, s.q.lookupLocked+" NOWAIT", key)
		if sqldb.IsLockTimeout(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("sqlstore: claim: %w", err)
		}
		return false, rows.Close()
	}
	return true, nil
}

// pause waits before the claim that follows waits claims that ran out of
// their lock wait on another lock than the key's row: from 1ms, doubling to
// 50ms (with jitter, as sqldb.Retry), about 0.2s over maxLockWaits claims.
func pause(ctx context.Context, waits int) error {
	d := min(time.Millisecond<<waits, 50*time.Millisecond)
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// mariaDBNoWait starts MariaDB's claim statement in a transaction.
const mariaDBNoWait = "SET STATEMENT innodb_lock_wait_timeout=0 FOR "

// mysqlClaimNoWait returns the claim statement with a bounded lock wait for
// the server: MariaDB takes SET STATEMENT innodb_lock_wait_timeout=0 (no
// wait), MySQL 8 the SET_VAR hint (at least a second).
// The server is asked once, in tx (not on another pooled connection, which
// a full pool would never hand out).
func (s *Store) mysqlClaimNoWait(ctx context.Context, tx *sql.Tx) (string, error) {
	if q := s.noWaitClaim.Load(); q != nil {
		return *q, nil
	}
	var version string
	if err := tx.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return "", fmt.Errorf("sqlstore: server version: %w", err)
	}
	var q string
	if strings.Contains(strings.ToLower(version), "mariadb") {
		q = mariaDBNoWait + s.q.claim
	} else {
		q = strings.Replace(s.q.claim, "INSERT INTO", "INSERT /*+ SET_VAR(innodb_lock_wait_timeout=1) */ INTO", 1)
	}
	s.noWaitClaim.Store(&q)
	return q, nil
}

// readBack returns MySQL's read-back of the row that the claim statement
// stmt wrote or locked. BeginTx's claim (stmt with a bounded lock wait) is
// the first statement of its transaction: a consistent read sees the row as
// the claim left it (inserted or taken by this transaction, or the latest
// committed, which the claim's lock keeps so), and takes no lock. A locking
// read would give the row an explicit lock besides the implicit one of its
// insert, which a page split hands on to the end of the left page as a gap
// lock, held as long as the transaction: a new key's claim there would wait
// for it (see heldElsewhere). Elsewhere (the caller's transaction, whose
// snapshot may be older) the read locks, to see the latest version.
func (s *Store) readBack(stmt string) string {
	if stmt == s.q.claim {
		return s.q.lookupLocked
	}
	return strings.TrimSuffix(s.q.lookupLocked, " FOR UPDATE")
}

// inflight is the set of keys held by this store's open transactions.
type inflight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

// add adds key, unless it is held already.
func (f *inflight) add(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.keys[key]; ok {
		return false
	}
	if f.keys == nil {
		f.keys = make(map[string]struct{})
	}
	f.keys[key] = struct{}{}
	return true
}

func (f *inflight) remove(key string) {
	f.mu.Lock()
	delete(f.keys, key)
	f.mu.Unlock()
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
	ended bool
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
	defer t.end()
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

// end lets the store's next transaction claim the key.
func (t *claimTx) end() {
	if t.key != "" && !t.ended {
		t.ended = true
		t.s.inflight.remove(t.key)
	}
}

// lost rolls back what is left of a transaction found lost by err.
func (t *claimTx) lost(err error) error {
	return errors.Join(fmt.Errorf("sqlstore: %w: %w", idempotency.ErrTxLost, err), rollback(t.tx))
}

// Rollback rolls the transaction back: the claim and everything written in
// the transaction are undone, and the next claimer runs the work again.
func (t *claimTx) Rollback(ctx context.Context) error {
	defer t.end()
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
	return s.claimOn(ctx, tx, "", key, fingerprint, lease)
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
