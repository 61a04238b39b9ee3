package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

var (
	// ErrTooLarge is returned (wrapped, with the sizes) when a key,
	// fingerprint, consumer, message id, entity, tie-break or response is
	// longer than the store holds. Nothing is written.
	ErrTooLarge = errors.New("sqlstore: value too large")
	// ErrInvalid is returned (wrapped) for an empty key, a non-positive lease
	// or retention, and similar input no store could hold.
	ErrInvalid = errors.New("sqlstore: invalid argument")
)

// Store is an idempotency.Store and idempotency.TxStore on a SQL database,
// with an inbox and an ordering guard for consumers. It is safe for
// concurrent use; any number of processes may share one database.
//
// Create it with New and create its tables with Migrate (or run the SQL that
// Schema returns with your own migration tool).
type Store struct {
	db      *sql.DB
	dialect Dialect
	q       queries
	cfg     config
}

var (
	_ idempotency.Store   = (*Store)(nil)
	_ idempotency.TxStore = (*Store)(nil)
)

// New returns a Store on db, which must be a database of dialect d opened
// with that dialect's driver (the store imports no driver: import
// github.com/jackc/pgx/v5/stdlib, modernc.org/sqlite or
// github.com/go-sql-driver/mysql yourself). New does not touch the database;
// call Migrate before first use. It returns an error naming the bad option,
// or an unknown dialect.
func New(db *sql.DB, d Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlstore: New: nil *sql.DB")
	}
	var q queries
	switch d {
	case Postgres:
		q = postgresQueries
	case SQLite:
		q = sqliteQueries
	case MySQL:
		q = mysqlQueries
	default:
		return nil, fmt.Errorf("sqlstore: New: unknown dialect %v", d)
	}
	cfg := config{
		table:     DefaultTable,
		now:       time.Now,
		maxResp:   DefaultMaxResponseSize,
		abandoned: DefaultAbandonedRetention,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.table != DefaultTable {
		q = q.withTable(cfg.table)
	}
	return &Store{db: db, dialect: d, q: q, cfg: cfg}, nil
}

func (q queries) withTable(name string) queries {
	r := strings.NewReplacer(DefaultTable, name)
	return queries{
		claim: r.Replace(q.claim), get: r.Replace(q.get), lookup: r.Replace(q.lookup),
		renew: r.Replace(q.renew), complete: r.Replace(q.complete),
		release: r.Replace(q.release), check: r.Replace(q.check), force: r.Replace(q.force),
		purge: r.Replace(q.purge), inbox: r.Replace(q.inbox), inboxGC: r.Replace(q.inboxGC),
		order: r.Replace(q.order), orderUpd: r.Replace(q.orderUpd), insert: r.Replace(q.insert),
		takeover: r.Replace(q.takeover), lookupLocked: r.Replace(q.lookupLocked), orderLock: r.Replace(q.orderLock),
	}
}

// DB returns the database the store was created with.
func (s *Store) DB() *sql.DB { return s.db }

// Table returns the name of the store's record table (the inbox and
// ordering tables add the suffixes _inbox and _order).
func (s *Store) Table() string { return s.cfg.table }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

func (s *Store) now() int64 { return s.cfg.now().UnixNano() }

// addNanos returns t+d, saturating instead of overflowing.
func addNanos(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return t + int64(d)
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
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes, at most %d are stored", ErrTooLarge, len(key), MaxKeyLen)
	}
	return nil
}

func checkClaim(key, fingerprint string, lease time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(fingerprint) > MaxFingerprintLen {
		return fmt.Errorf("%w: fingerprint is %d bytes, at most %d are stored", ErrTooLarge, len(fingerprint), MaxFingerprintLen)
	}
	if lease <= 0 {
		return fmt.Errorf("%w: lease %v is not positive", ErrInvalid, lease)
	}
	return nil
}

// querier is what a claim needs: *sql.DB, *sql.Tx or a caller's sqldb.Tx.
type querier = sqldb.Tx

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
	if s.dialect != Postgres {
		now := s.now()
		rec, err := s.getOn(ctx, s.db, s.q.lookup, key)
		switch {
		case err == nil:
			if !rec.claimable(fingerprint, now) {
				return idempotency.Claim{Record: rec.Record}, nil
			}
		case errors.Is(err, idempotency.ErrNotFound):
			if s.dialect == MySQL {
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
		c, err = s.claimOn(ctx, s.db, key, fingerprint, lease)
		return err
	})
	return c, err
}

// insertMySQL claims a key that had no record with INSERT IGNORE; ok is
// false if the key was inserted by someone else in between.
func (s *Store) insertMySQL(ctx context.Context, key, fingerprint string, lease time.Duration) (c idempotency.Claim, ok bool, err error) {
	err = s.retry(ctx, func(ctx context.Context) error {
		now := s.now()
		token := newToken()
		leaseUntil := addNanos(now, lease)
		res, err := s.db.ExecContext(ctx, s.q.insert, key, fingerprint, token, leaseUntil, addNanos(leaseUntil, s.cfg.abandoned))
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
// transaction. It loops when the record it had to report vanished in between
// (released or purged by someone else), which is rare and short-lived.
func (s *Store) claimOn(ctx context.Context, q querier, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	for attempt := 0; ; attempt++ {
		if attempt == maxClaimRounds {
			return idempotency.Claim{}, fmt.Errorf("sqlstore: claim: key %q changed under %d claims in a row", key, attempt)
		}
		now := s.now()
		token := newToken()
		leaseUntil := addNanos(now, lease)
		expires := addNanos(leaseUntil, s.cfg.abandoned)
		var (
			c     idempotency.Claim
			found bool
			err   error
		)
		switch s.dialect {
		case Postgres:
			c, found, err = s.claimPostgres(ctx, q, key, fingerprint, token, leaseUntil, expires, now)
		case SQLite:
			c, found, err = s.claimSQLite(ctx, q, key, fingerprint, token, leaseUntil, expires, now)
		default:
			c, found, err = s.claimMySQL(ctx, q, key, fingerprint, token, leaseUntil, expires, now)
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

func (s *Store) claimPostgres(ctx context.Context, q querier, key, fp string, token, leaseUntil, expires, now int64) (idempotency.Claim, bool, error) {
	rows, err := q.QueryContext(ctx, s.q.claim, key, fp, token, leaseUntil, expires)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		// The conflicting row is newer than this statement's snapshot:
		// the next round sees it.
		return idempotency.Claim{}, false, rows.Err()
	}
	var acquired bool
	rec, err := scanStored(rows, key, &acquired)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if err := rows.Close(); err != nil {
		return idempotency.Claim{}, false, err
	}
	if acquired {
		return idempotency.Claim{Acquired: true, Token: token}, true, nil
	}
	if !rec.claimable(fp, now) {
		return idempotency.Claim{Record: rec.Record}, true, nil
	}
	// Expired, or abandoned with the same fingerprint: take it over if it
	// is still the row just read (compare-and-swap on its token).
	res, err := q.ExecContext(ctx, s.q.takeover, fp, token, leaseUntil, expires, key, rec.Token, now)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return idempotency.Claim{}, false, err
	}
	return idempotency.Claim{Acquired: true, Token: token}, true, nil
}

func (s *Store) claimSQLite(ctx context.Context, q querier, key, fp string, token, leaseUntil, expires, now int64) (idempotency.Claim, bool, error) {
	rows, err := q.QueryContext(ctx, s.q.claim, key, fp, token, leaseUntil, expires, now)
	if err != nil {
		return idempotency.Claim{}, false, err
	}
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
	return s.reportExisting(ctx, q, key, now)
}

func (s *Store) claimMySQL(ctx context.Context, q querier, key, fp string, token, leaseUntil, expires, now int64) (idempotency.Claim, bool, error) {
	if _, err := q.ExecContext(ctx, s.q.claim, key, fp, token, leaseUntil, expires, now, now); err != nil {
		return idempotency.Claim{}, false, err
	}
	rec, err := s.getOn(ctx, q, s.q.lookupLocked, key)
	if errors.Is(err, idempotency.ErrNotFound) {
		return idempotency.Claim{}, false, nil
	}
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	if rec.Token == token && rec.Status == idempotency.StatusInProgress {
		return idempotency.Claim{Acquired: true, Token: token}, true, nil
	}
	if rec.rawExpires <= now {
		return idempotency.Claim{}, false, nil
	}
	return idempotency.Claim{Record: rec.Record}, true, nil
}

// reportExisting reads the live record of key for a claim that did not take
// it; found is false if there is none any more.
func (s *Store) reportExisting(ctx context.Context, q querier, key string, now int64) (idempotency.Claim, bool, error) {
	rec, err := s.getOn(ctx, q, s.q.get, key, now)
	if errors.Is(err, idempotency.ErrNotFound) {
		return idempotency.Claim{}, false, nil
	}
	if err != nil {
		return idempotency.Claim{}, false, err
	}
	return idempotency.Claim{Record: rec.Record}, true, nil
}

type storedRecord struct {
	idempotency.Record
	rawLease, rawExpires int64
}

// claimable reports whether a claim with fingerprint fp at now may take the
// record over: it expired, or it is in progress under an expired lease with
// the same fingerprint.
func (r storedRecord) claimable(fp string, now int64) bool {
	return r.rawExpires <= now ||
		(r.Status == idempotency.StatusInProgress && r.rawLease <= now && r.Fingerprint == fp)
}

// scanStored scans (fingerprint, status, token, lease_until, expires_at,
// response), preceded by acquired when it is not nil.
func scanStored(rows *sql.Rows, key string, acquired *bool) (storedRecord, error) {
	var (
		rec    storedRecord
		status int16
		resp   []byte
		err    error
	)
	rec.Key = key
	if acquired != nil {
		err = rows.Scan(acquired, &rec.Fingerprint, &status, &rec.Token, &rec.rawLease, &rec.rawExpires, &resp)
	} else {
		err = rows.Scan(&rec.Fingerprint, &status, &rec.Token, &rec.rawLease, &rec.rawExpires, &resp)
	}
	if err != nil {
		return storedRecord{}, err
	}
	if err := fillRecord(&rec.Record, status, rec.rawLease, rec.rawExpires, resp); err != nil {
		return storedRecord{}, err
	}
	return rec, nil
}

func fillRecord(rec *idempotency.Record, status int16, leaseUntil, expire int64, resp []byte) error {
	switch idempotency.Status(status) {
	case idempotency.StatusInProgress:
		rec.Status = idempotency.StatusInProgress
		rec.LeaseExpiresAt = time.Unix(0, leaseUntil)
	case idempotency.StatusCompleted:
		rec.Status = idempotency.StatusCompleted
		rec.ExpiresAt = time.Unix(0, expire)
		if resp == nil {
			resp = []byte{}
		}
		rec.Response = resp
	default:
		return fmt.Errorf("record %q has unknown status %d", rec.Key, status)
	}
	return nil
}

// getOn runs query (get or lookup) for key with the extra args and scans one
// record, or returns idempotency.ErrNotFound.
func (s *Store) getOn(ctx context.Context, q querier, query, key string, args ...any) (storedRecord, error) {
	rows, err := q.QueryContext(ctx, query, append([]any{key}, args...)...)
	if err != nil {
		return storedRecord{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return storedRecord{}, err
		}
		return storedRecord{}, idempotency.ErrNotFound
	}
	rec, err := scanStored(rows, key, nil)
	if err != nil {
		return storedRecord{}, err
	}
	return rec, rows.Close()
}

// Get implements idempotency.Store. It returns idempotency.ErrNotFound when
// key has no record or its record expired.
func (s *Store) Get(ctx context.Context, key string) (idempotency.Record, error) {
	if err := checkKey(key); err != nil {
		return idempotency.Record{}, err
	}
	rec, err := s.getOn(ctx, s.db, s.q.get, key, s.now())
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
		return fmt.Errorf("%w: lease %v is not positive", ErrInvalid, lease)
	}
	return s.retry(ctx, func(ctx context.Context) error {
		now := s.now()
		until := addNanos(now, lease)
		res, err := s.db.ExecContext(ctx, s.q.renew, until, addNanos(until, s.cfg.abandoned), key, token, now)
		if err != nil {
			return fmt.Errorf("sqlstore: renew: %w", err)
		}
		return s.affectedOrHeld(ctx, s.db, res, key, token, now)
	})
}

// affectedOrHeld turns an UPDATE's result into nil or ErrLeaseLost. MySQL
// counts changed rows, not matched ones, unless the DSN sets
// clientFoundRows, so a renewal to the same instant reports 0: then the row is
// checked directly.
func (s *Store) affectedOrHeld(ctx context.Context, q querier, res sql.Result, key string, token, now int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	if n > 0 {
		return nil
	}
	if s.dialect != MySQL {
		return idempotency.ErrLeaseLost
	}
	rows, err := q.QueryContext(ctx, s.q.check, key, token, now)
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
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
// when key is not held with token, and ErrTooLarge when response exceeds
// WithMaxResponseSize; in both cases nothing is stored.
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
		return fmt.Errorf("%w: response is %d bytes, at most %d are stored", ErrTooLarge, len(response), s.cfg.maxResp)
	}
	if retention <= 0 {
		return fmt.Errorf("%w: retention %v is not positive", ErrInvalid, retention)
	}
	if response == nil {
		response = []byte{}
	}
	now := s.now()
	res, err := q.ExecContext(ctx, s.q.complete, response, addNanos(now, retention), key, token, now)
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
		res, err := s.db.ExecContext(ctx, s.q.release, key, token)
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
