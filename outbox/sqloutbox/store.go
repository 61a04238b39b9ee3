package sqloutbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/message"
)

// Store is an outbox on a SQL database: it enqueues messages in the caller's
// transactions and implements outbox.Store for the relay and for operators.
// It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect steadfast.Dialect
	cfg     config
	q       queries
	lockID  int32 // PostgreSQL advisory lock class of the table's keys

	unparked atomic.Int64 // when the last unpark sweep ran (UnixNano)
	notified atomic.Int64 // when an Enqueue last sent a NOTIFY (UnixNano)
	sweep    struct {
		sync.Mutex
		cursor string // the key the next sweep starts after
	}
}

var _ outbox.Store = (*Store)(nil)

type queries struct {
	schema, claim, claimExclude, enqueueOne, enqueueOneNotify, settle, unpark, cleanup, stats, listDead, get, requeue, requeueLock, discard, pauses, resume string
}

// New returns a Store on db for dialect d. It checks its arguments and
// options but does not touch the database; call Migrate (or run Schema's
// statements yourself) before use. It returns an error for a nil db, an
// unknown dialect, or (naming the option) an invalid option.
func New(db *sql.DB, d steadfast.Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqloutbox: New: db is nil")
	}
	table, _ := sqldb.ParseTable(defaultTable)
	cfg := config{table: table, maxPayload: defaultMaxPayload, notify: d == steadfast.Postgres, fillFactor: defaultFillFactor}
	if err := applyOptions("New", &cfg, opts); err != nil {
		return nil, err
	}
	var q queries
	switch d {
	case steadfast.Postgres:
		q = queries{schema: pgSchema, claim: pgClaim, settle: pgSettle, unpark: pgUnpark, cleanup: pgCleanup, stats: pgStats,
			listDead: pgListDead, get: pgGet, requeue: pgRequeue, requeueLock: pgRequeueLock, discard: pgDiscard,
			pauses: pgPauses, resume: pgResume}
	case steadfast.SQLite:
		q = queries{schema: sqliteSchema, claim: sqliteClaim, cleanup: sqliteCleanup, stats: genericStats,
			listDead: genericListDead, get: genericGet, pauses: genericPauses, resume: genericResume}
	case steadfast.MySQL:
		q = queries{schema: mysqlSchema, claim: mysqlClaimSelect, cleanup: mysqlCleanupSelect, stats: genericStats,
			listDead: genericListDead, get: genericGet, pauses: genericPauses, resume: genericResume}
	default:
		return nil, fmt.Errorf("sqloutbox: New: unknown dialect %v", d)
	}
	h := fnv.New32a()
	h.Write([]byte(cfg.table.String()))
	s := &Store{db: db, dialect: d, cfg: cfg, lockID: int32(h.Sum32())}
	s.q = queries{schema: s.expand(q.schema), claim: s.expand(q.claim), settle: s.expand(q.settle), unpark: s.expand(q.unpark),
		cleanup: s.expand(q.cleanup), stats: s.expand(q.stats), listDead: s.expand(q.listDead), get: s.expand(q.get),
		requeue: s.expand(q.requeue), requeueLock: s.expand(q.requeueLock), discard: s.expand(q.discard),
		pauses: s.expand(q.pauses), resume: s.expand(q.resume)}
	if d == steadfast.Postgres {
		s.q.claim, s.q.claimExclude = strings.Replace(s.q.claim, "{exclude}", "", 1), strings.Replace(s.q.claim, "{exclude}", pgClaimExclude, 1)
		s.q.enqueueOne, s.q.enqueueOneNotify = s.expand(pgEnqueueOne), s.expand(pgEnqueueOneNotify)
	}
	return s, nil
}

const (
	genericListDead = `SELECT ` + plainCols + ` FROM {t} WHERE state = 2 AND seq > ? AND (? = '' OR topic = ?) ORDER BY seq LIMIT ?`
	genericGet      = `SELECT ` + plainCols + ` FROM {t} WHERE id = ?`
)

// expand fills a statement template with the store's names and settings.
func (s *Store) expand(tmpl string) string {
	async, asyncFrom, claimFrom := pgAsync, ", cfg", "FROM cfg "
	if s.cfg.durable {
		async, asyncFrom, claimFrom = "", "", ""
	}
	now := sqliteNow
	if s.dialect == steadfast.MySQL {
		now = mysqlNow
	}
	deleted := "1" // backend.Delivered: delivered messages are deleted
	if s.cfg.keepDelivered {
		deleted = "0" // no kind
	}
	t := s.cfg.table
	return strings.NewReplacer("{deleted}", deleted, "{fillfactor}", strconv.Itoa(s.cfg.fillFactor),
		"{t}", t.String(), "{k}", t.Qualified("_keys"), "{p}", t.Qualified("_pauses"), "{i}", t.Name, "{n}", t.Name, "{s}", t.SchemaPrefix(),
		"{now}", now, "{async}", async, "{asyncFrom}", asyncFrom, "{claimFrom}", claimFrom,
	).Replace(tmpl)
}

// Dialect returns the store's dialect.
func (s *Store) Dialect() steadfast.Dialect { return s.dialect }

// Table returns the table's name as SQL names it (schema.name or name). On
// PostgreSQL it is also the channel that Enqueue notifies.
func (s *Store) Table() string { return s.cfg.table.String() }

// Schema returns the DDL that Migrate runs, for reading or for running with
// your own migration tool. Every statement is idempotent.
func (s *Store) Schema() string { return s.q.schema }

// Migrate creates the tables and their indexes if they do not exist.
func (s *Store) Migrate(ctx context.Context) error {
	var lines []string
	for _, l := range strings.Split(s.q.schema, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" {
			continue
		}
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqloutbox: migrate: %w", err)
		}
	}
	return nil
}

// unparkDue reports whether it is this caller's turn to run the unpark
// sweep (at most every unparkEvery per Store). SQLite needs none: its single
// writer orders every enqueue before or after a settle.
func (s *Store) unparkDue() bool {
	last := s.unparked.Load()
	return time.Since(time.Unix(0, last)) > unparkEvery && s.unparked.CompareAndSwap(last, time.Now().UnixNano())
}

// unparkEvery is how often a store looks for parked messages whose
// predecessor was settled while they were being enqueued.
const unparkEvery = 5 * time.Second

func (s *Store) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	return sqldb.Retry(ctx, sqldb.RetryPolicy{}, fn)
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// Enqueue writes msgs in tx, the caller's transaction: they are delivered
// once it commits, and never if it rolls back. Messages with an empty ID get
// a UUIDv7 (the caller's slice is not modified). A batch costs one round trip
// (on MySQL two when some messages have a partition key), up to 500
// messages per statement. Enqueue never commits or rolls back tx. To enqueue
// outside any business transaction, use EnqueueWithoutTx.
//
// Before writing anything it refuses, with an *outbox.InvalidMessageError
// (matching outbox.ErrInvalid), an empty topic, a topic, destination or key
// over 255 bytes, a payload over the limit (see WithMaxPayload), an ID that
// is not a UUID, and headers that are not HTTP fields (see outbox.Message).
//
// Per-key order: on PostgreSQL Enqueue takes a transaction-scoped advisory
// lock on each partition key (in key order, so batches do not deadlock each
// other); on MySQL it locks the key's row in the {table}_keys table. A second
// transaction enqueueing for the same key waits until the first commits or
// rolls back, so positions of a key are handed out in commit order and a
// later message can never be delivered before an earlier one that has yet to
// commit. SQLite has one writer at a time and needs no lock. Keep keyed
// enqueues late in long transactions: the lock is held until the end.
//
// On PostgreSQL, Enqueue runs only ExecContext on tx. On MySQL a keyed
// batch also reads, with a plain SELECT on tx, which of its keys have a
// pending message (to park the new ones behind it); under REPEATABLE READ
// that read takes the transaction's snapshot if nothing read before it.
func (s *Store) Enqueue(ctx context.Context, tx steadfast.Tx, msgs ...outbox.Message) error {
	if tx == nil {
		return errors.New("sqloutbox: Enqueue: transaction is nil")
	}
	return s.enqueue(ctx, tx, msgs)
}

// EnqueueWithoutTx writes msgs in a transaction of its own, which it begins
// and commits: they are not atomic with anything else the caller writes. It
// is for events that belong to no business transaction; where there is one,
// use Enqueue in it. It validates msgs and keeps per-key order as Enqueue
// does.
func (s *Store) EnqueueWithoutTx(ctx context.Context, msgs ...outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return s.retry(ctx, func(ctx context.Context) error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqloutbox: enqueue: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		if err := s.Enqueue(ctx, tx, msgs...); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqloutbox: enqueue: commit: %w", err)
		}
		return nil
	})
}

type execFunc func(ctx context.Context, query string, args ...any) error

func (s *Store) enqueue(ctx context.Context, tx steadfast.Tx, msgs []outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	exec := func(ctx context.Context, query string, args ...any) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}
	ms, hs, err := message.Prepare(msgs, s.cfg.maxPayload)
	if err != nil {
		return err
	}
	tp := message.TraceParent(ctx)
	const chunk = 500 // PostgreSQL: 8 parameters a row, under 65,535
	for i := 0; i < len(ms); i += chunk {
		j := min(i+chunk, len(ms))
		var err error
		switch s.dialect {
		case steadfast.Postgres:
			err = s.pgEnqueue(ctx, exec, ms[i:j], hs[i:j], tp)
		case steadfast.SQLite:
			err = s.sqliteEnqueue(ctx, exec, ms[i:j], hs[i:j], tp)
		case steadfast.MySQL:
			err = s.mysqlEnqueue(ctx, tx, exec, ms[i:j], hs[i:j], tp)
		}
		if err != nil {
			return fmt.Errorf("sqloutbox: enqueue: %w", err)
		}
	}
	return nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sortedKeys returns the distinct non-empty keys of ms, sorted.
func sortedKeys(ms []outbox.Message) []string {
	var keys []string
	for _, m := range ms {
		if m.Key != "" {
			keys = append(keys, m.Key)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// scanner is *sql.Rows or *sql.Row.
type scanner interface{ Scan(dest ...any) error }

// claimedRow is a row of a claim's RETURNING list.
type claimedRow struct {
	d outbox.Delivery
	c backend.Claim
}

// scanClaimed reads a row of a claim's RETURNING list: seq, id, topic,
// destination (NULL when it is the topic: one string less to allocate),
// key, headers, payload, traceparent, created_at, attempts, abandoned.
func scanClaimed(sc scanner, token string) (claimedRow, error) {
	var (
		r                      claimedRow
		dest, key, headers, tp sql.NullString
		created                int64
		attempts, aband        int64
	)
	d := &r.d
	if err := sc.Scan(&d.Position, &d.ID, &d.Topic, &dest, &key, &headers, &d.Payload, &tp, &created, &attempts, &aband); err != nil {
		return r, err
	}
	fillClaimed(&r, token, dest, key, headers, tp, created, attempts, aband)
	return r, nil
}

// fillClaimed completes a claimed row whose position, id, topic and payload
// were read.
func fillClaimed(r *claimedRow, token string, dest, key, headers, tp sql.NullString, created, attempts, aband int64) {
	d := &r.d
	d.Destination = d.Topic
	if dest.Valid {
		d.Destination = dest.String
	}
	d.Key = key.String
	d.CreatedAt = time.UnixMicro(created)
	d.Attempt = int(attempts)
	r.c = backend.Claim{Token: token, TraceParent: tp.String, Abandoned: int(aband)}
	if headers.Valid && headers.String != "" {
		if err := json.Unmarshal([]byte(headers.String), &d.Headers); err != nil {
			r.c.Malformed = fmt.Errorf("headers are not a JSON object of strings: %w", err)
		}
	}
	if reason := message.Check(d.Message); reason != "" {
		r.c.Malformed = errors.New(reason)
	}
}

// scanRecord reads a row of the record columns (pgCols, plainCols).
func scanRecord(sc scanner) (outbox.Record, error) {
	var (
		r                    outbox.Record
		key, headers, tp, le sql.NullString
		created, avail       int64
		done                 sql.NullInt64
		state, attempts      int64
	)
	if err := sc.Scan(&r.Position, &r.ID, &r.Topic, &r.Destination, &key, &headers, &r.Payload, &tp, &created, &avail, &state, &attempts, &le, &done); err != nil {
		return r, err
	}
	r.Key, r.LastError = key.String, le.String
	r.State, r.Attempts = outbox.State(state), int(attempts)
	r.CreatedAt, r.AvailableAt = time.UnixMicro(created), time.UnixMicro(avail)
	if done.Valid {
		r.DoneAt = time.UnixMicro(done.Int64)
	}
	if headers.Valid && headers.String != "" {
		_ = json.Unmarshal([]byte(headers.String), &r.Headers) // shown as far as it parses
	}
	return r, nil
}

// Claim implements outbox.Store.
func (s *Store) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	if req.Limit <= 0 || req.Lease <= 0 {
		return fmt.Errorf("sqloutbox: claim: limit %d and lease %v must be positive", req.Limit, req.Lease)
	}
	if claimed == nil {
		return errors.New("sqloutbox: claim: claimed is nil")
	}
	var out []claimedRow
	var err error
	switch token := ""; s.dialect {
	case steadfast.Postgres:
		out, err = s.pgClaim(ctx, req, pgToken())
	case steadfast.SQLite:
		token = uuid.NewString()
		err = s.retry(ctx, func(ctx context.Context) error {
			out, err = s.sqliteClaim(ctx, req, token)
			return err
		})
	case steadfast.MySQL:
		token = uuid.NewString()
		err = s.retry(ctx, func(ctx context.Context) error {
			out, err = s.mysqlClaim(ctx, req, token)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqloutbox: claim: %w", err)
	}
	for _, r := range out {
		claimed(r.d, r.c)
	}
	return nil
}

func collectClaimed(rows *sql.Rows, token string, limit int) ([]claimedRow, error) {
	defer rows.Close()
	out := make([]claimedRow, 0, limit)
	for rows.Next() {
		c, err := scanClaimed(rows, token)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b claimedRow) int { return int(a.d.Position - b.d.Position) })
	return out, nil
}

// Settle implements outbox.Store.
func (s *Store) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	return s.SettleAndClaim(ctx, outcomes, 0, nil)
}

// SettleAndClaim is Settle, and, when claimed is not nil, on PostgreSQL it
// also claims for the caller, under a fresh token and a lease of lease, the
// next message of each key whose message the outcomes delivered or
// dead-lettered (but for an outcome that yields its key:
// backend.Outcome.Yield), when it may be published now, and calls claimed
// for each after the write-back is durable, as Claim does. Each such message costs
// the database a rewrite of its row in place instead of the new version
// with its index entries that making it claimable costs, and reaches the
// publisher without waiting for a claim. outbox.Relay calls it when the
// store has it. On SQLite and MySQL it is Settle.
func (s *Store) SettleAndClaim(ctx context.Context, outcomes []backend.Outcome, lease time.Duration, claimed func(outbox.Delivery, backend.Claim)) ([]int64, error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	for _, o := range outcomes {
		if o.Kind < backend.Delivered || o.Kind > backend.Extend {
			return nil, fmt.Errorf("sqloutbox: settle: position %d: unknown outcome kind %d", o.Position, o.Kind)
		}
	}
	if claimed != nil && lease <= 0 {
		return nil, fmt.Errorf("sqloutbox: settle: lease %v must be positive", lease)
	}
	var refused []int64
	var err error
	switch s.dialect {
	case steadfast.Postgres:
		var token int64
		if claimed != nil {
			token = pgToken()
		}
		var next []claimedRow
		if refused, next, err = s.pgSettle(ctx, outcomes, token, lease); err == nil {
			for _, r := range next {
				claimed(r.d, r.c)
			}
		}
	default:
		err = s.retry(ctx, func(ctx context.Context) error {
			refused, err = s.txSettle(ctx, outcomes)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqloutbox: settle: %w", err)
	}
	return refused, nil
}

// Cleanup deletes up to limit messages that were delivered more than
// retention ago (on the database's clock) and returns how many it deleted.
// Only a store built WithKeepDelivered keeps delivered messages; the others
// delete them as they are delivered, and Cleanup finds none.
// It never deletes a pending, claimed or dead message, and concurrent callers
// do not wait for each other (they skip the rows another is deleting, where
// the database can). Package housekeeping calls it; call it again while it
// returns limit.
func (s *Store) Cleanup(ctx context.Context, retention time.Duration, limit int) (int, error) {
	return s.cleanup(ctx, "cleanup", stateDelivered, retention, limit)
}

// CleanupDead deletes up to limit dead letters that became dead more than
// retention ago (on the database's clock) and returns how many it deleted,
// as Cleanup does for delivered messages. Dead letters are kept until
// requeued or discarded unless something calls it (housekeeping, with a
// retention of the user's choice).
func (s *Store) CleanupDead(ctx context.Context, retention time.Duration, limit int) (int, error) {
	return s.cleanup(ctx, "cleanup dead letters", stateDead, retention, limit)
}

func (s *Store) cleanup(ctx context.Context, what string, state int, retention time.Duration, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	var err error
	switch s.dialect {
	case steadfast.Postgres:
		var res sql.Result
		if res, err = s.db.ExecContext(ctx, s.q.cleanup, seconds(retention), limit, state); err == nil {
			n, err = res.RowsAffected()
		}
	case steadfast.SQLite:
		err = s.retry(ctx, func(ctx context.Context) error {
			res, err := s.db.ExecContext(ctx, s.q.cleanup, state, retention.Microseconds(), limit)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
	case steadfast.MySQL:
		err = s.retry(ctx, func(ctx context.Context) error {
			n, err = s.mysqlCleanup(ctx, state, retention, limit)
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("sqloutbox: %s: %w", what, err)
	}
	return int(n), nil
}

// Stats implements outbox.Store.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	var age int64
	if err := s.db.QueryRowContext(ctx, s.q.stats).Scan(&st.Pending, &age, &st.Dead); err != nil {
		return st, fmt.Errorf("sqloutbox: stats: %w", err)
	}
	st.OldestPendingAge = max(0, time.Duration(age)*time.Microsecond)
	return st, nil
}

// ListDead implements outbox.Store.
func (s *Store) ListDead(ctx context.Context, topic string, after int64, limit int) ([]outbox.Record, error) {
	if limit <= 0 {
		limit = 100
	}
	var rows *sql.Rows
	var err error
	if s.dialect == steadfast.Postgres {
		rows, err = s.db.QueryContext(ctx, s.q.listDead, after, topic, limit)
	} else {
		rows, err = s.db.QueryContext(ctx, s.q.listDead, after, topic, topic, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("sqloutbox: list dead letters: %w", err)
	}
	defer rows.Close()
	var out []outbox.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("sqloutbox: list dead letters: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqloutbox: list dead letters: %w", err)
	}
	return out, nil
}

// Get implements outbox.Store.
func (s *Store) Get(ctx context.Context, id string) (outbox.Record, error) {
	if _, err := uuid.Parse(id); err != nil {
		return outbox.Record{}, fmt.Errorf("sqloutbox: get %q: %w", id, outbox.ErrNotFound)
	}
	r, err := scanRecord(s.db.QueryRowContext(ctx, s.q.get, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("sqloutbox: get %s: %w", id, outbox.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("sqloutbox: get %s: %w", id, err)
	}
	return r, nil
}

func checkIDs(ids []string) error {
	for _, id := range ids {
		if _, err := uuid.Parse(id); err != nil {
			return fmt.Errorf("%q is not a UUID", id)
		}
	}
	return nil
}

// Requeue implements outbox.Store: the named dead letters become pending
// again, ready now, attempts reset, in one transaction. Each keeps its id
// (so consumers' inboxes still recognise it) and takes a new position at
// the tail of its key, as if enqueued now: it is delivered after the
// messages of its key that are pending, and never while one of them is in
// flight. A consumer's ordering guard on positions therefore sees it as the
// newest of its key; its own domain version (or timestamp) in the payload is
// what tells the consumer whether its content is still news.
func (s *Store) Requeue(ctx context.Context, ids ...string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if err := checkIDs(ids); err != nil {
		return 0, fmt.Errorf("sqloutbox: requeue: %w", err)
	}
	var n int
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		n, err = s.requeue(ctx, ids)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqloutbox: requeue: %w", err)
	}
	return n, nil
}

func (s *Store) requeue(ctx context.Context, ids []string) (int, error) {
	tx, err := s.db.BeginTx(ctx, s.txOptions())
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	var n int64
	if s.dialect == steadfast.Postgres {
		if _, err := tx.ExecContext(ctx, s.q.requeueLock, ids, s.lockID); err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, s.q.requeue, ids)
		if err != nil {
			return 0, err
		}
		if n, err = res.RowsAffected(); err != nil {
			return 0, err
		}
	} else if n, err = s.txRequeue(ctx, tx, ids); err != nil {
		return 0, err
	}
	if n > 0 && s.cfg.notify {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, '')", s.Table()); err != nil {
			return 0, err
		}
	}
	return int(n), tx.Commit()
}

// txRequeue is Requeue's transaction on SQLite and MySQL: read the dead
// letters, lock their keys (MySQL), delete them and insert them again, the
// stored values copied as they are.
func (s *Store) txRequeue(ctx context.Context, tx *sql.Tx, ids []string) (int64, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	in := placeholders(len(ids))
	nb, lock := "not_before", ""
	if s.dialect == steadfast.MySQL {
		nb, lock = "NULL", " FOR UPDATE" // MySQL keeps NotBefore in available_at only
	}
	rows, err := tx.QueryContext(ctx, s.expand("SELECT id, topic, destination, partition_key, headers, payload, traceparent, "+nb+
		", created_at, last_error FROM {t} WHERE state = 2 AND id IN ("+in+") ORDER BY seq"+lock), args...)
	if err != nil {
		return 0, err
	}
	type dead struct {
		id, topic, dest           string
		key, headers, tp, lastErr sql.NullString
		payload                   []byte
		notBefore                 sql.NullInt64
		created                   int64
	}
	var ds []dead
	for rows.Next() {
		var d dead
		if err := rows.Scan(&d.id, &d.topic, &d.dest, &d.key, &d.headers, &d.payload, &d.tp, &d.notBefore, &d.created, &d.lastErr); err != nil {
			rows.Close()
			return 0, err
		}
		if d.payload == nil {
			d.payload = []byte{}
		}
		ds = append(ds, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(ds) == 0 {
		return 0, nil
	}
	if s.dialect == steadfast.MySQL {
		var keys []string
		for _, d := range ds {
			if d.key.Valid {
				keys = append(keys, d.key.String)
			}
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		if len(keys) > 0 {
			kargs := make([]any, len(keys))
			for i, k := range keys {
				kargs[i] = k
			}
			q := s.expand("INSERT INTO {k} (partition_key) VALUES ") + strings.TrimSuffix(strings.Repeat("(?),", len(keys)), ",") +
				" ON DUPLICATE KEY UPDATE partition_key = partition_key"
			if _, err := tx.ExecContext(ctx, q, kargs...); err != nil {
				return 0, err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, s.expand("DELETE FROM {t} WHERE state = 2 AND id IN ("+in+")"), args...); err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if s.dialect == steadfast.MySQL { // not parked: the claim holds it back while an earlier message of its key is pending (see mysqlEnqueue)
			q := s.expand("INSERT INTO {t} (id, topic, destination, partition_key, headers, payload, traceparent, created_at, available_at, last_error) VALUES (?,?,?,?,?,?,?,?,{now},?)")
			if _, err := tx.ExecContext(ctx, q, d.id, d.topic, d.dest, d.key, d.headers, d.payload, d.tp, d.created, d.lastErr); err != nil {
				return 0, err
			}
			continue
		}
		avail := "CASE WHEN ? > {now} THEN ? ELSE {now} END"
		availArgs := []any{d.notBefore, d.notBefore}
		if d.key.Valid {
			avail = "CASE WHEN ? OR EXISTS (SELECT 1 FROM {t} e WHERE e.partition_key = ? AND e.state = 0) THEN " + parked + " ELSE " + avail + " END"
			availArgs = append([]any{seen[d.key.String], d.key.String}, availArgs...)
			seen[d.key.String] = true
		}
		q := s.expand("INSERT INTO {t} (id, topic, destination, partition_key, headers, payload, traceparent, not_before, created_at, available_at, last_error) VALUES (?,?,?,?,?,?,?,?,?," + avail + ",?)")
		a := append([]any{d.id, d.topic, d.dest, d.key, d.headers, d.payload, d.tp, d.notBefore, d.created}, availArgs...)
		if _, err := tx.ExecContext(ctx, q, append(a, d.lastErr)...); err != nil {
			return 0, err
		}
	}
	return int64(len(ds)), nil
}

// Pauses implements outbox.Store.
func (s *Store) Pauses(ctx context.Context) ([]outbox.PausedDestination, error) {
	rows, err := s.db.QueryContext(ctx, s.q.pauses)
	if err != nil {
		return nil, fmt.Errorf("sqloutbox: pauses: %w", err)
	}
	defer rows.Close()
	now := time.Now()
	var out []outbox.PausedDestination
	for rows.Next() {
		var p outbox.PausedDestination
		var left int64
		if err := rows.Scan(&p.Destination, &left, &p.Reason); err != nil {
			return nil, fmt.Errorf("sqloutbox: pauses: %w", err)
		}
		p.Until = now.Add(time.Duration(left) * time.Microsecond)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqloutbox: pauses: %w", err)
	}
	return out, nil
}

// Resume implements outbox.Store. On PostgreSQL it also notifies the
// table's channel, so that listening relays claim the destinations'
// messages at once.
func (s *Store) Resume(ctx context.Context, destinations ...string) (int, error) {
	if len(destinations) == 0 {
		return 0, nil
	}
	var n int64
	err := s.retry(ctx, func(ctx context.Context) error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		var res sql.Result
		if s.dialect == steadfast.Postgres {
			res, err = tx.ExecContext(ctx, s.q.resume, destinations)
		} else {
			args := make([]any, len(destinations))
			for i, d := range destinations {
				args[i] = d
			}
			res, err = tx.ExecContext(ctx, strings.ReplaceAll(s.q.resume, "{dests}", placeholders(len(args))), args...)
		}
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		if n > 0 && s.cfg.notify {
			if _, err := tx.ExecContext(ctx, "SELECT pg_notify($1, '')", s.Table()); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return 0, fmt.Errorf("sqloutbox: resume: %w", err)
	}
	return int(n), nil
}

// Discard implements outbox.Store.
func (s *Store) Discard(ctx context.Context, ids ...string) (int, error) {
	return s.deadOp(ctx, "discard", ids, s.q.discard, `DELETE FROM {t} WHERE state = 2 AND id IN ({ids})`)
}

func (s *Store) deadOp(ctx context.Context, what string, ids []string, pgQuery, generic string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if err := checkIDs(ids); err != nil {
		return 0, fmt.Errorf("sqloutbox: %s: %w", what, err)
	}
	var n int64
	err := s.retry(ctx, func(ctx context.Context) error {
		var res sql.Result
		var err error
		if s.dialect == steadfast.Postgres {
			res, err = s.db.ExecContext(ctx, pgQuery, ids)
		} else {
			args := make([]any, len(ids))
			for i, id := range ids {
				args[i] = id
			}
			q := strings.ReplaceAll(s.expand(generic), "{ids}", placeholders(len(ids)))
			res, err = s.db.ExecContext(ctx, q, args...)
		}
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqloutbox: %s: %w", what, err)
	}
	return int(n), nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// exclusion returns "AND destination NOT IN (?,...)" and its arguments.
func exclusion(dests []string) (string, []any) {
	if len(dests) == 0 {
		return "", nil
	}
	args := make([]any, len(dests))
	for i, t := range dests {
		args[i] = t
	}
	return "AND destination NOT IN (" + placeholders(len(dests)) + ")", args
}
