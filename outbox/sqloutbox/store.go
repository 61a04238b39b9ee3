package sqloutbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/outbox"
)

// Store is an outbox on a SQL database: it enqueues messages in the caller's
// transactions and implements outbox.Store and outbox.DeadLetters for the
// relay and for operators. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect Dialect
	cfg     config
	q       queries
	lockID  int32 // PostgreSQL advisory lock class of the table's keys

	unparked atomic.Int64 // PostgreSQL: when the last unpark sweep ran (UnixNano)
}

var (
	_ outbox.Store       = (*Store)(nil)
	_ outbox.DeadLetters = (*Store)(nil)
)

type queries struct {
	schema, claim, settle, unpark, cleanup, stats, listDead, get, requeue, discard string
	cols                                                                           string
}

// New returns a Store on db for dialect d. It checks its arguments and
// options but does not touch the database; call Migrate (or run Schema's
// statements yourself) before use.
func New(db *sql.DB, d Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqloutbox: New: nil *sql.DB")
	}
	cfg := config{table: DefaultTable, maxPayload: outbox.DefaultMaxPayload, notify: d == Postgres, now: time.Now}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	var q queries
	switch d {
	case Postgres:
		q = queries{schema: pgSchema, claim: pgClaim, settle: pgSettle, unpark: pgUnpark, cleanup: pgCleanup, stats: pgStats,
			listDead: pgListDead, get: pgGet, requeue: pgRequeue, discard: pgDiscard, cols: pgCols}
	case SQLite:
		q = queries{schema: sqliteSchema, claim: sqliteClaim, cleanup: sqliteCleanup, cols: plainCols}
	case MySQL:
		q = queries{schema: mysqlSchema, claim: mysqlClaimSelect, cleanup: mysqlCleanupSelect, cols: plainCols}
	default:
		return nil, fmt.Errorf("sqloutbox: New: unknown dialect %v", d)
	}
	h := fnv.New32a()
	h.Write([]byte(cfg.table))
	async, asyncFrom, claimFrom := pgAsync, ", cfg", "FROM cfg "
	if cfg.durable {
		async, asyncFrom, claimFrom = "", "", ""
	}
	r := strings.NewReplacer("{async}", async, "{asyncFrom}", asyncFrom, "{claimFrom}", claimFrom)
	q.claim, q.settle = r.Replace(q.claim), r.Replace(q.settle)
	s := &Store{db: db, dialect: d, cfg: cfg, q: q.with(cfg.table), lockID: int32(h.Sum32())}
	if d != Postgres {
		s.q.stats = s.expand(genericStats)
		s.q.listDead = s.expand(`SELECT {c} FROM {t} WHERE state = 2 AND seq > ? AND (? = '' OR topic = ?) ORDER BY seq LIMIT ?`)
		s.q.get = s.expand(`SELECT {c} FROM {t} WHERE id = ?`)
	}
	return s, nil
}

const genericStats = `
SELECT COALESCE(SUM(CASE WHEN state = 0 THEN 1 ELSE 0 END), 0),
	COALESCE(MIN(CASE WHEN state = 0 THEN created_at END), 0),
	COALESCE(SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END), 0)
FROM {t} WHERE state IN (0, 2)`

func (q queries) with(table string) queries {
	idx := table
	if i := strings.LastIndexByte(table, '.'); i >= 0 {
		idx = table[i+1:]
	}
	r := strings.NewReplacer("{t}", table, "{i}", idx, "{c}", q.cols)
	f := func(s string) string { return r.Replace(s) }
	return queries{schema: f(q.schema), claim: f(q.claim), settle: f(q.settle), unpark: f(q.unpark), cleanup: f(q.cleanup),
		stats: f(q.stats), listDead: f(q.listDead), get: f(q.get), requeue: f(q.requeue), discard: f(q.discard), cols: q.cols}
}

func (s *Store) expand(sqlText string) string {
	return queries{stats: sqlText, cols: s.q.cols}.with(s.cfg.table).stats
}

// DB returns the database the store was made with.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Table returns the table's name.
func (s *Store) Table() string { return s.cfg.table }

// NotifyChannel returns the PostgreSQL channel that Enqueue notifies (the
// table's name) and a PostgresListener listens to.
func (s *Store) NotifyChannel() string { return s.cfg.table }

// Schema returns the DDL that Migrate runs, for reading or for running with
// your own migration tool. Every statement is idempotent.
func (s *Store) Schema() string { return s.q.schema }

// Migrate creates the table and its indexes if they do not exist.
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
// sweep (at most every unparkEvery per Store).
func (s *Store) unparkDue() bool {
	last := s.unparked.Load()
	return time.Since(time.Unix(0, last)) > unparkEvery && s.unparked.CompareAndSwap(last, time.Now().UnixNano())
}

func (s *Store) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	return sqldb.Retry(ctx, sqldb.RetryPolicy{}, fn)
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func seconds(d time.Duration) float64 { return d.Seconds() }

func encodeHeaders(h map[string]string) (string, error) {
	if len(h) == 0 {
		return "", nil
	}
	b, err := json.Marshal(h)
	return string(b), err
}

// check applies the store's own limits after outbox.Prepare.
func (s *Store) prepare(ctx context.Context, msgs []outbox.Message) ([]outbox.Message, []string, string, error) {
	ms, tp, err := outbox.Prepare(ctx, msgs, s.cfg.maxPayload)
	if err != nil {
		return nil, nil, "", err
	}
	hs := make([]string, len(ms))
	for i, m := range ms {
		switch {
		case len(m.Topic) > MaxNameLen:
			return nil, nil, "", &outbox.InvalidMessageError{Index: i, Reason: fmt.Sprintf("topic longer than %d bytes", MaxNameLen)}
		case len(m.Key) > MaxNameLen:
			return nil, nil, "", &outbox.InvalidMessageError{Index: i, Reason: fmt.Sprintf("partition key longer than %d bytes", MaxNameLen)}
		}
		if hs[i], err = encodeHeaders(m.Headers); err != nil {
			return nil, nil, "", &outbox.InvalidMessageError{Index: i, Reason: "headers: " + err.Error()}
		}
	}
	return ms, hs, tp, nil
}

// Enqueue writes msgs in tx, the caller's transaction: they are delivered
// once it commits, and never if it rolls back. Messages with an empty ID get
// a UUIDv7 (the caller's slice is not modified). A batch costs one round trip
// (on MySQL two when some messages have a partition key), up to 500
// messages per statement.
//
// Before writing anything it refuses, with an error matching
// outbox.ErrInvalidMessage, an empty topic, a payload over the limit (see
// WithMaxPayload), a topic or key over MaxNameLen bytes and an ID that is
// not a UUID.
//
// Per-key order: on PostgreSQL Enqueue takes a transaction-scoped advisory
// lock on each partition key (in key order, so batches do not deadlock each
// other); on MySQL it locks the key's row in the {table}_keys table. A second
// transaction enqueueing for the same key waits until the first commits or
// rolls back, so positions of a key are handed out in commit order and a
// later message can never be delivered before an earlier one that has yet to
// commit. SQLite has one writer at a time and needs no lock. Keep keyed
// enqueues late in long transactions: the lock is held until the end.
func (s *Store) Enqueue(ctx context.Context, tx sqldb.Tx, msgs ...outbox.Message) error {
	if tx == nil {
		return errors.New("sqloutbox: Enqueue: nil transaction")
	}
	return s.enqueue(ctx, func(ctx context.Context, query string, args ...any) error {
		_, err := tx.ExecContext(ctx, query, args...)
		return err
	}, msgs)
}

type execFunc func(ctx context.Context, query string, args ...any) error

func (s *Store) enqueue(ctx context.Context, exec execFunc, msgs []outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ms, hs, tp, err := s.prepare(ctx, msgs)
	if err != nil {
		return err
	}
	const chunk = 500 // PostgreSQL: 8 parameters a row, under 65,535
	for i := 0; i < len(ms); i += chunk {
		j := min(i+chunk, len(ms))
		var err error
		switch s.dialect {
		case Postgres:
			err = s.pgEnqueue(ctx, exec, ms[i:j], hs[i:j], tp)
		case SQLite:
			err = s.sqliteEnqueue(ctx, exec, ms[i:j], hs[i:j], tp)
		case MySQL:
			err = s.mysqlEnqueue(ctx, exec, ms[i:j], hs[i:j], tp)
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

// scanClaimed reads a row of a claim's RETURNING list.
func scanClaimed(sc scanner, token string) (outbox.Claimed, error) {
	var (
		c                outbox.Claimed
		key, headers, tp sql.NullString
		created          int64
		attempts         int64
		id, topic        string
		payload          []byte
	)
	if err := sc.Scan(&c.Position, &id, &topic, &key, &headers, &payload, &tp, &created, &attempts); err != nil {
		return c, err
	}
	c.ID, c.Topic, c.Key, c.Payload = id, topic, key.String, payload
	c.TraceParent = tp.String
	c.CreatedAt = time.UnixMicro(created)
	c.Attempt = int(attempts)
	c.Token = token
	if headers.Valid && headers.String != "" {
		if err := json.Unmarshal([]byte(headers.String), &c.Headers); err != nil {
			c.Malformed = fmt.Errorf("headers are not a JSON object of strings: %w", err)
		}
	}
	if strings.TrimSpace(topic) == "" {
		c.Malformed = errors.New("empty topic")
	}
	if _, err := uuid.Parse(id); err != nil {
		c.Malformed = fmt.Errorf("id %q is not a UUID", id)
	}
	return c, nil
}

// scanRecord reads a row of the {c} columns.
func scanRecord(sc scanner) (outbox.Record, error) {
	var (
		r                    outbox.Record
		key, headers, tp, le sql.NullString
		created, avail       int64
		done                 sql.NullInt64
		state, attempts      int64
	)
	if err := sc.Scan(&r.Position, &r.ID, &r.Topic, &key, &headers, &r.Payload, &tp, &created, &avail, &state, &attempts, &le, &done); err != nil {
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
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]outbox.Claimed, error) {
	if req.Limit <= 0 || req.Lease <= 0 {
		return nil, fmt.Errorf("sqloutbox: Claim: limit %d and lease %v must be positive", req.Limit, req.Lease)
	}
	token := uuid.NewString()
	var out []outbox.Claimed
	var err error
	if s.dialect == SQLite && s.unparkDue() {
		if err := s.retry(ctx, s.unparkAll); err != nil {
			return nil, fmt.Errorf("sqloutbox: claim: %w", err)
		}
	}
	switch s.dialect {
	case Postgres:
		out, err = s.pgClaim(ctx, req, token)
	case SQLite:
		err = s.retry(ctx, func(ctx context.Context) error {
			out, err = s.sqliteClaim(ctx, req, token)
			return err
		})
	case MySQL:
		err = s.retry(ctx, func(ctx context.Context) error {
			out, err = s.mysqlClaim(ctx, req, token)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqloutbox: claim: %w", err)
	}
	return out, nil
}

func collectClaimed(rows *sql.Rows, token string, limit int) ([]outbox.Claimed, error) {
	defer rows.Close()
	out := make([]outbox.Claimed, 0, limit)
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
	slices.SortFunc(out, func(a, b outbox.Claimed) int { return int(a.Position - b.Position) })
	return out, nil
}

// Settle implements outbox.Store.
func (s *Store) Settle(ctx context.Context, outcomes []outbox.Outcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	var applied int64
	var err error
	switch s.dialect {
	case Postgres:
		applied, err = s.pgSettle(ctx, outcomes)
	default:
		err = s.retry(ctx, func(ctx context.Context) error {
			applied, err = s.txSettle(ctx, outcomes)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqloutbox: settle: %w", err)
	}
	if lost := len(outcomes) - int(applied); lost > 0 {
		return &outbox.LeaseLostError{Rejected: lost}
	}
	return nil
}

// Cleanup implements outbox.Store.
func (s *Store) Cleanup(ctx context.Context, retention time.Duration, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	var err error
	switch s.dialect {
	case Postgres:
		var res sql.Result
		if res, err = s.db.ExecContext(ctx, s.q.cleanup, seconds(retention), limit); err == nil {
			n, err = res.RowsAffected()
		}
	case SQLite:
		err = s.retry(ctx, func(ctx context.Context) error {
			res, err := s.db.ExecContext(ctx, s.q.cleanup, micros(s.cfg.now().Add(-retention)), limit)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
	case MySQL:
		err = s.retry(ctx, func(ctx context.Context) error {
			n, err = s.mysqlCleanup(ctx, retention, limit)
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("sqloutbox: cleanup: %w", err)
	}
	return int(n), nil
}

// Stats implements outbox.Store.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	var st outbox.Stats
	var a, b, c int64
	if err := s.db.QueryRowContext(ctx, s.q.stats).Scan(&a, &b, &c); err != nil {
		return st, fmt.Errorf("sqloutbox: stats: %w", err)
	}
	st.Pending, st.Dead = a, c
	switch {
	case s.dialect == Postgres:
		st.OldestPendingAge = time.Duration(b) * time.Microsecond
	case b > 0:
		now := s.cfg.now()
		if s.dialect == MySQL {
			var m int64
			if err := s.db.QueryRowContext(ctx, "SELECT "+mysqlNow).Scan(&m); err != nil {
				return st, fmt.Errorf("sqloutbox: stats: %w", err)
			}
			now = time.UnixMicro(m)
		}
		st.OldestPendingAge = max(0, now.Sub(time.UnixMicro(b)))
	}
	return st, nil
}

// ListDead implements outbox.DeadLetters.
func (s *Store) ListDead(ctx context.Context, topic string, after int64, limit int) ([]outbox.Record, error) {
	if limit <= 0 {
		limit = 100
	}
	var rows *sql.Rows
	var err error
	if s.dialect == Postgres {
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

// Get implements outbox.DeadLetters.
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

// Requeue implements outbox.DeadLetters. One statement changes every named
// dead letter, so the change is atomic.
func (s *Store) Requeue(ctx context.Context, ids ...string) (int, error) {
	return s.deadOp(ctx, "requeue", ids, s.q.requeue,
		`UPDATE {t} SET state = 0, available_at = {now}, attempts = 0, claim_token = NULL, done_at = NULL WHERE state = 2 AND id IN ({ids})`)
}

// Discard implements outbox.DeadLetters.
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
		if s.dialect == Postgres {
			res, err = s.db.ExecContext(ctx, pgQuery, ids)
		} else {
			now := "?"
			args := []any{}
			if strings.Contains(generic, "{now}") {
				if s.dialect == MySQL {
					now = mysqlNow
				} else {
					args = append(args, micros(s.cfg.now()))
				}
			}
			for _, id := range ids {
				args = append(args, id)
			}
			q := strings.NewReplacer("{now}", now, "{ids}", placeholders(len(ids))).Replace(s.expand(generic))
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

// exclusion returns "AND topic NOT IN (?,...)" and its arguments.
func exclusion(topics []string) (string, []any) {
	if len(topics) == 0 {
		return "", nil
	}
	args := make([]any, len(topics))
	for i, t := range topics {
		args[i] = t
	}
	return "AND topic NOT IN (" + placeholders(len(topics)) + ")", args
}
