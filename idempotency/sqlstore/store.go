package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// Store is an idempotency.Store and idempotency.TxStore on a SQL database,
// with an inbox and an ordering guard for consumers. It is safe for
// concurrent use; any number of processes may share one database.
//
// Create it with New and create its tables with Migrate (or run the SQL that
// Schema returns with your own migration tool).
type Store struct {
	db      *sql.DB
	dialect steadfast.Dialect
	q       queries
	cfg     config
	schema  []string
	// inflight holds the keys of the store's open transactions.
	inflight inflight
	// noWaitClaim is MySQL's claim statement with a bounded lock wait,
	// once the server's flavour is known.
	noWaitClaim atomic.Pointer[string]
	// stmts are the prepared statements (see stmtCache).
	stmts *stmtCache
}

var (
	_ idempotency.Store   = (*Store)(nil)
	_ idempotency.TxStore = (*Store)(nil)
)

// New returns a Store on db, which must be a database of dialect d opened
// with that dialect's driver (the store imports no driver: import
// github.com/jackc/pgx/v5/stdlib, modernc.org/sqlite or
// github.com/go-sql-driver/mysql yourself). New does not touch the database;
// call Migrate before first use. It returns an error naming the option at
// fault, for a nil db or an unknown dialect.
func New(db *sql.DB, d steadfast.Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: New: nil *sql.DB")
	}
	var q queries
	var now, clock string
	switch d {
	case steadfast.Postgres:
		q, now, clock = postgresQueries, postgresNow, postgresClock
	case steadfast.SQLite:
		q, now = sqliteQueries, sqliteNow
	case steadfast.MySQL:
		q, now = mysqlQueries, mysqlNow
	default:
		return nil, fmt.Errorf("sqlstore: New: unknown dialect %v", d)
	}
	cfg := config{
		table:     sqldb.Table{Name: "steadfast_idempotency"},
		maxResp:   4 << 20,
		abandoned: 24 * time.Hour,
	}
	if err := applyOptions(&cfg, opts); err != nil {
		return nil, err
	}
	n := names{
		Table:  cfg.table.String(),
		Inbox:  cfg.table.Qualified("_inbox"),
		Order:  cfg.table.Qualified("_order"),
		Claim:  cfg.table.Qualified("_claim"),
		Name:   cfg.table.Name,
		Schema: cfg.table.SchemaPrefix(),
		Now:    now,
		Clock:  clock,
	}
	q, err := q.render(n)
	if err != nil {
		return nil, err
	}
	schema, err := schemaStatements(d, n)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, dialect: d, q: q, cfg: cfg, schema: schema, stmts: new(stmtCache)}
	runtime.AddCleanup(s, (*stmtCache).close, s.stmts)
	return s, nil
}

// Table returns the name of the store's record table, as WithTable gave it
// (the inbox and ordering tables add the suffixes _inbox and _order).
func (s *Store) Table() string { return s.cfg.table.String() }

// micros returns d in whole microseconds, rounded up so that a positive
// duration never becomes zero.
func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if d%time.Microsecond > 0 {
		us++
	}
	return us
}

func newToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("sqlstore: %w: empty key", idempotency.ErrInvalid)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("sqlstore: %w: key is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(key), maxKeyLen)
	}
	return nil
}

func checkClaim(key, fingerprint string, lease time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(fingerprint) > maxShortLen {
		return fmt.Errorf("sqlstore: %w: fingerprint is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(fingerprint), maxShortLen)
	}
	if lease <= 0 {
		return fmt.Errorf("sqlstore: %w: lease %v is not positive", idempotency.ErrInvalid, lease)
	}
	return nil
}

// querier is what a claim needs: *sql.DB, *sql.Tx or a caller's
// steadfast.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// retry runs fn under the store's deadlock/busy retry policy.
func (s *Store) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	return sqldb.Retry(ctx, s.cfg.retry, fn)
}

// Claim implements idempotency.Store. A deadlock or busy error is retried;
// other database errors are returned wrapped.
func (s *Store) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	if err := checkClaim(key, fingerprint, lease); err != nil {
		return idempotency.Claim{}, err
	}
	// SQLite and MySQL take a fast path, one read and no write: a live
	// record that this claim could not take anyway (completed, held, or
	// another fingerprint) is returned as is, so a replay costs one SELECT.
	// (PostgreSQL's claim statement is already one round trip that writes
	// nothing for an existing key.)
	var err error
	if s.dialect != steadfast.Postgres {
		rec, err := s.lookup(ctx, s.db, key, fingerprint)
		switch {
		case err == nil:
			if !rec.flag {
				return idempotency.Claim{Record: rec.Record}, nil
			}
		case errors.Is(err, idempotency.ErrNotFound):
			if s.dialect == steadfast.MySQL {
				// A plain INSERT IGNORE reports unambiguously whether it
				// inserted, whatever the DSN's clientFoundRows.
				if c, ok, err := s.insertMySQL(ctx, key, fingerprint, lease); err != nil || ok {
					return c, err
				}
			}
		default:
			return idempotency.Claim{}, fmt.Errorf("sqlstore: claim: %w", err)
		}
	}
	var c idempotency.Claim
	err = s.retry(ctx, func(ctx context.Context) error {
		var err error
		c, err = s.claimOn(ctx, s.db, "", key, fingerprint, lease)
		return err
	})
	return c, err
}

// insertMySQL claims a key that had no record with INSERT IGNORE; ok is
// false if the key was inserted by someone else in between.
func (s *Store) insertMySQL(ctx context.Context, key, fingerprint string, lease time.Duration) (c idempotency.Claim, ok bool, err error) {
	err = s.retry(ctx, func(ctx context.Context) error {
		token := newToken()
		l := micros(lease)
		res, err := s.exec(ctx, s.db, s.q.insert, key, fingerprint, token, l, l, micros(s.cfg.abandoned))
		if err != nil {
			return fmt.Errorf("sqlstore: claim: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlstore: claim: %w", err)
		}
		c, ok = idempotency.Claim{Acquired: n == 1, Token: token}, n == 1
		return nil
	})
	return c, ok, err
}

// maxClaimRounds bounds the claim loop of claimOn.
const maxClaimRounds = 16

// claimOn claims key with statements run on q, which may be the pool or a
// transaction; stmt, when not empty, is MySQL's claim statement to use
// instead of the usual one. It loops when the record it had to report
// vanished in between (released or purged by someone else), which is rare
// and short-lived.
func (s *Store) claimOn(ctx context.Context, q querier, stmt, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	for attempt := 0; ; attempt++ {
		if attempt == maxClaimRounds {
			return idempotency.Claim{}, fmt.Errorf("sqlstore: claim: key %q changed under %d claims in a row", key, attempt)
		}
		token := newToken()
		l, a := micros(lease), micros(s.cfg.abandoned)
		var (
			c     idempotency.Claim
			found bool
			err   error
		)
		switch s.dialect {
		case steadfast.Postgres:
			c, found, err = s.claimPostgres(ctx, q, key, fingerprint, token, l, a)
		case steadfast.SQLite:
			c, found, err = s.claimSQLite(ctx, q, key, fingerprint, token, l, a)
		default:
			c, found, err = s.claimMySQL(ctx, q, stmt, key, fingerprint, token, l, a)
		}
		if err != nil {
			return idempotency.Claim{}, fmt.Errorf("sqlstore: claim: %w", err)
		}
		if found {
			return c, nil
		}
		if err := ctx.Err(); err != nil {
			return idempotency.Claim{}, fmt.Errorf("sqlstore: claim: %w", err)
		}
	}
}

func (s *Store) claimPostgres(ctx context.Context, q querier, key, fp string, token, lease, abandoned int64) (idempotency.Claim, bool, error) {
	rows, err := q.QueryContext(ctx, s.q.claim, key, fp, token, lease, abandoned)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return idempotency.Claim{}, false, rows.Err()
	}
	// One value for every column, so that scanning allocates once.
	var r struct {
		tok, leaseLeft, left sql.NullInt64
		fp                   sql.NullString
		status               sql.NullInt16
		resp                 []byte
	}
	if err := rows.Scan(&r.tok, &r.fp, &r.status, &r.leaseLeft, &r.left, &r.resp); err != nil {
		return idempotency.Claim{}, false, err
	}
	if err := rows.Close(); err != nil {
		return idempotency.Claim{}, false, err
	}
	if !r.status.Valid {
		switch {
		case !r.tok.Valid:
			// The key was inserted after this statement's snapshot: the
			// next round sees it.
			return idempotency.Claim{}, false, nil
		case r.tok.Int64 != token:
			return idempotency.Claim{}, false, fmt.Errorf("the claim of %q inserted token %d, not %d", key, r.tok.Int64, token)
		}
		return idempotency.Claim{Acquired: true, Token: token}, true, nil
	}
	// What the other dialects' statements compute (see queries): the time
	// left of the lease (in progress) or of the retention, and whether
	// the record is claimable, expired or abandoned with this fingerprint.
	held := r.status.Int16 == int16(idempotency.StatusInProgress)
	ttl := r.left.Int64
	if held {
		ttl = r.leaseLeft.Int64
	}
	claimable := r.left.Int64 <= 0 || (held && r.leaseLeft.Int64 <= 0 && r.fp.String == fp)
	rec, err := newStoredRecord(key, r.fp.String, r.status.Int16, r.tok.Int64, ttl, claimable, r.resp)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if !rec.flag {
		return idempotency.Claim{Record: rec.Record}, true, nil
	}
	// Expired, or abandoned with the same fingerprint: take it over if it
	// is still the row just read (compare-and-swap on its token), and still
	// claimable at the statement's time.
	res, err := q.ExecContext(ctx, s.q.takeover, fp, token, lease, abandoned, key, rec.Token)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return idempotency.Claim{}, false, err
	}
	return idempotency.Claim{Acquired: true, Token: token}, true, nil
}

func (s *Store) claimSQLite(ctx context.Context, q querier, key, fp string, token, lease, abandoned int64) (idempotency.Claim, bool, error) {
	rows, done, err := s.query(ctx, q, s.q.claim, key, fp, token, lease, abandoned)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	defer done()
	got := rows.Next()
	var t int64
	if got {
		err = rows.Scan(&t)
	}
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if got && t == token {
		return idempotency.Claim{Acquired: true, Token: token}, true, nil
	}
	return s.reportExisting(ctx, q, key)
}

func (s *Store) claimMySQL(ctx context.Context, q querier, stmt, key, fp string, token, lease, abandoned int64) (idempotency.Claim, bool, error) {
	if stmt == "" {
		stmt = s.q.claim
	}
	if _, err := s.exec(ctx, q, stmt, key, fp, token, lease, lease, abandoned); err != nil {
		return idempotency.Claim{}, false, err
	}
	rec, err := s.getOn(ctx, q, s.readBack(stmt), key, key)
	if errors.Is(err, idempotency.ErrNotFound) {
		return idempotency.Claim{}, false, nil
	}
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if rec.Token == token && rec.Status == idempotency.StatusInProgress {
		return idempotency.Claim{Acquired: true, Token: token}, true, nil
	}
	if rec.flag { // expired at the statement's time: claim again
		return idempotency.Claim{}, false, nil
	}
	return idempotency.Claim{Record: rec.Record}, true, nil
}

// reportExisting reads the live record of key for a claim that did not take
// it; found is false if there is none any more.
func (s *Store) reportExisting(ctx context.Context, q querier, key string) (idempotency.Claim, bool, error) {
	rec, err := s.getOn(ctx, q, s.q.get, key, key)
	if errors.Is(err, idempotency.ErrNotFound) {
		return idempotency.Claim{}, false, nil
	}
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	return idempotency.Claim{Record: rec.Record}, true, nil
}

// storedRecord is a record as a statement read it, with the statement's
// flag (see queries).
type storedRecord struct {
	idempotency.Record
	flag bool
}

// scanRecord scans (fingerprint, status, token, ttl, flag, response).
func scanRecord(rows *sql.Rows, key string) (storedRecord, error) {
	var (
		fp         string
		status     int16
		token, ttl int64
		flag       bool
		resp       []byte
	)
	if err := rows.Scan(&fp, &status, &token, &ttl, &flag, &resp); err != nil {
		return storedRecord{}, err
	}
	return newStoredRecord(key, fp, status, token, ttl, flag, resp)
}

// newStoredRecord returns the record of key read as (fingerprint, status,
// token, ttl, flag, response).
func newStoredRecord(key, fp string, status int16, token, ttl int64, flag bool, resp []byte) (storedRecord, error) {
	rec := storedRecord{Record: idempotency.Record{Key: key, Fingerprint: fp, Token: token}, flag: flag}
	rec.TTL = time.Duration(max(ttl, 0)) * time.Microsecond
	switch idempotency.Status(status) {
	case idempotency.StatusInProgress:
		rec.Status = idempotency.StatusInProgress
	case idempotency.StatusCompleted:
		rec.Status = idempotency.StatusCompleted
		if resp == nil {
			resp = []byte{}
		}
		rec.Response = resp
	default:
		return storedRecord{}, fmt.Errorf("record %q has unknown status %d", key, status)
	}
	return rec, nil
}

// getOn runs query, a statement that reads one record, with args, and
// scans it, or returns idempotency.ErrNotFound.
func (s *Store) getOn(ctx context.Context, q querier, query, key string, args ...any) (storedRecord, error) {
	rows, done, err := s.query(ctx, q, query, args...)
	if err != nil {
		return storedRecord{}, err
	}
	defer done()
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return storedRecord{}, err
		}
		return storedRecord{}, idempotency.ErrNotFound
	}
	rec, err := scanRecord(rows, key)
	if err != nil {
		return storedRecord{}, err
	}
	return rec, rows.Close()
}

// lookup reads the record of key as stored, expired or not, with whether a
// claim with fingerprint fp could take it.
func (s *Store) lookup(ctx context.Context, q querier, key, fp string) (storedRecord, error) {
	if s.dialect == steadfast.MySQL {
		return s.getOn(ctx, q, s.q.lookup, key, fp, key)
	}
	return s.getOn(ctx, q, s.q.lookup, key, key, fp)
}

// Get implements idempotency.Store. It returns idempotency.ErrNotFound when
// key has no record or its record expired.
func (s *Store) Get(ctx context.Context, key string) (idempotency.Record, error) {
	if err := checkKey(key); err != nil {
		return idempotency.Record{}, err
	}
	rec, err := s.getOn(ctx, s.db, s.q.get, key, key)
	if err != nil {
		if errors.Is(err, idempotency.ErrNotFound) {
			return idempotency.Record{}, err
		}
		return idempotency.Record{}, fmt.Errorf("sqlstore: get: %w", err)
	}
	return rec.Record, nil
}

// Renew implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token.
//
// A claim taken with ClaimTx is held by the row lock of its open
// transaction, not by its lease: do not renew it (on PostgreSQL the renewal
// does not see the uncommitted row and reports ErrLeaseLost; on MySQL it
// waits for the transaction to end).
func (s *Store) Renew(ctx context.Context, key string, token int64, lease time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("sqlstore: %w: lease %v is not positive", idempotency.ErrInvalid, lease)
	}
	return s.retry(ctx, func(ctx context.Context) error {
		l, a := micros(lease), micros(s.cfg.abandoned)
		var (
			res sql.Result
			err error
		)
		if s.dialect == steadfast.MySQL {
			res, err = s.exec(ctx, s.db, s.q.renew, l, l, a, key, token)
		} else {
			res, err = s.exec(ctx, s.db, s.q.renew, l, a, key, token)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: renew: %w", err)
		}
		return s.affectedOrHeld(ctx, s.db, res, key, token)
	})
}

// affectedOrHeld turns an UPDATE's result into nil or ErrLeaseLost. MySQL
// counts changed rows, not matched ones, unless the DSN sets
// clientFoundRows, so a renewal to the same instant reports 0: then the row is
// checked directly.
func (s *Store) affectedOrHeld(ctx context.Context, q querier, res sql.Result, key string, token int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	if n > 0 {
		return nil
	}
	if s.dialect != steadfast.MySQL {
		return idempotency.ErrLeaseLost
	}
	rows, done, err := s.query(ctx, q, s.q.check, key, token)
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	defer done()
	defer rows.Close()
	if rows.Next() {
		return rows.Close()
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	return idempotency.ErrLeaseLost
}

// Complete implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token, and an error wrapping
// idempotency.ErrTooLarge when response exceeds WithMaxResponseSize; in both
// cases nothing is stored.
func (s *Store) Complete(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error {
	return s.retry(ctx, func(ctx context.Context) error {
		return s.completeOn(ctx, s.db, key, token, response, retention)
	})
}

func (s *Store) completeOn(ctx context.Context, q querier, key string, token int64, response []byte, retention time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(response) > s.cfg.maxResp {
		return fmt.Errorf("sqlstore: %w: response is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(response), s.cfg.maxResp)
	}
	if retention <= 0 {
		return fmt.Errorf("sqlstore: %w: retention %v is not positive", idempotency.ErrInvalid, retention)
	}
	if response == nil {
		response = []byte{}
	}
	res, err := s.exec(ctx, q, s.q.complete, response, micros(retention), key, token)
	if err != nil {
		return fmt.Errorf("sqlstore: complete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: complete: %w", err)
	}
	if n == 0 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Release implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token.
func (s *Store) Release(ctx context.Context, key string, token int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.retry(ctx, func(ctx context.Context) error {
		res, err := s.exec(ctx, s.db, s.q.release, key, token)
		if err != nil {
			return fmt.Errorf("sqlstore: release: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlstore: release: %w", err)
		}
		if n == 0 {
			return idempotency.ErrLeaseLost
		}
		return nil
	})
}
