package sqlcatchup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

const defaultTable = "steadfast_catchup"

// Option configures a Store. Options are made by the With functions of this
// package.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

type config struct{ table sqldb.Table }

// The suffixes of the store's other table and its indexes.
var suffixes = []string{"_failed", "_failed_state", "_failed_event"}

// WithTable sets the name of the store's table, "name" or "schema.name"
// (a PostgreSQL schema, a MySQL database, an attached SQLite database),
// each part an unquoted identifier [A-Za-z_][A-Za-z0-9_]*; the table of
// failed events and the indexes are named after it (name_failed, ...), so
// the name is at most 50 bytes. Defaults to "steadfast_catchup".
func WithTable(name string) Option {
	return &optionFunc{Name: "WithTable", Set: func(c *config) error {
		t, err := sqldb.ParseTable(name, suffixes...)
		if err != nil {
			return err
		}
		c.table = t
		return nil
	}}
}

// Store keeps the durable state of catchup pollers in a SQL database: each
// source's cursor and lease, and the events whose handler failed (counting
// attempts, then dead letters). It implements catchup.Store, and lists,
// requeues and discards dead letters for operators. Times come from the
// database's clock, so that replicas whose clocks disagree agree on leases.
// It is safe for concurrent use by any number of processes.
//
// Create it with New and its tables with Migrate (or run Schema's
// statements with your own tool).
type Store struct {
	db      *sql.DB
	dialect steadfast.Dialect
	table   string
	schema  string
	q       map[string]string
}

var _ catchup.Store = (*Store)(nil)

// New returns a Store on db, a database of dialect d opened with that
// dialect's driver (the store imports none). It does not touch the
// database; call Migrate before use. It returns an error for a nil db, an
// unknown dialect and an option at fault.
func New(db *sql.DB, d steadfast.Dialect, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlcatchup: New: nil *sql.DB")
	}
	cfg := config{table: sqldb.Table{Name: defaultTable}}
	if err := option.Apply("sqlcatchup", "New", &cfg, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	}); err != nil {
		return nil, err
	}
	var schema, now, lock string
	switch d {
	case steadfast.Postgres:
		schema, now, lock = pgSchema, pgNow, " FOR UPDATE SKIP LOCKED"
	case steadfast.SQLite:
		schema, now = sqliteSchema, sqliteNow
	case steadfast.MySQL:
		schema, now = mysqlSchema, mysqlNow
	default:
		return nil, fmt.Errorf("sqlcatchup: New: unknown dialect %v", d)
	}
	r := strings.NewReplacer("{t}", cfg.table.String(), "{i}", cfg.table.Name, "{now}", now, "{lock}", lock, "{skip}", catchup.Now)
	s := &Store{db: db, dialect: d, table: cfg.table.String(), schema: r.Replace(schema), q: map[string]string{}}
	mysql := map[string]string{
		"create": qCreateMySQL, "fail": qFailMySQL, "bury": qBuryMySQL, "refuse": qRefuseMySQL,
		"setCursor": qSetCursorMySQL, "skipToEnd": qSkipToEndMySQL, "purgeFailing": qPurgeFailingMySQL,
	}
	for name, text := range map[string]string{
		"take": qTake, "create": qCreate, "cursor": qCursor, "release": qRelease, "advance": qAdvance,
		"fail": qFail, "attempts": qAttempts, "bury": qBury, "refuse": qRefuse, "failing": qFailing,
		"requeued": qRequeued, "resolve": qResolve, "listDead": qListDead, "requeue": qRequeue, "discard": qDiscard,
		"cursors": qCursors, "setCursor": qSetCursor, "skipToEnd": qSkipToEnd, "purgeFailing": qPurgeFailing,
	} {
		if m, ok := mysql[name]; ok && d == steadfast.MySQL {
			text = m
		}
		s.q[name] = r.Replace(text)
		if d == steadfast.Postgres && !strings.Contains(text, "{ids}") {
			s.q[name] = numbered(s.q[name], 1)
		}
	}
	return s, nil
}

// numbered replaces each ? of q by $n, $n+1, ...
func numbered(q string, n int) string {
	var b strings.Builder
	for _, c := range q {
		if c == '?' {
			b.WriteString("$" + strconv.Itoa(n))
			n++
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Table returns the name of the store's table ("" for a nil *Store).
func (s *Store) Table() string {
	if s == nil {
		return ""
	}
	return s.table
}

// Schema returns the statements Migrate runs, for reading or for running
// with your own migration tool ("" for a nil *Store). Every statement is
// idempotent.
func (s *Store) Schema() string {
	if s == nil {
		return ""
	}
	return s.schema
}

// Migrate creates the store's tables and index if they do not exist. It is
// safe to run on every start, from several processes.
func (s *Store) Migrate(ctx context.Context) error {
	if s == nil {
		return errors.New("sqlcatchup: Migrate: nil *Store")
	}
	var lines []string
	for _, l := range strings.Split(s.schema, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if stmt = strings.TrimSpace(stmt); stmt == "" {
			continue
		}
		if err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
			_, err := s.db.ExecContext(ctx, stmt)
			return err
		}); err != nil && !s.concurrentCreate(err) {
			return fmt.Errorf("sqlcatchup: migrate: %w", err)
		}
	}
	return nil
}

// concurrentCreate reports a PostgreSQL catalog collision of two concurrent
// CREATE ... IF NOT EXISTS (the other one created the object).
func (s *Store) concurrentCreate(err error) bool {
	var pg interface{ SQLState() string }
	return s.dialect == steadfast.Postgres && errors.As(err, &pg) && (pg.SQLState() == "23505" || pg.SQLState() == "42P07")
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// Lease implements catchup.Store.
func (s *Store) Lease(ctx context.Context, source, owner string, d time.Duration) (string, bool, error) {
	if s == nil {
		return "", false, errors.New("sqlcatchup: Lease: nil *Store")
	}
	if source == "" || owner == "" || d <= 0 {
		return "", false, errors.New("sqlcatchup: Lease: empty source or owner, or a lease that is not positive")
	}
	var held bool
	err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, s.q["take"], owner, micros(d), source, owner)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			if res, err = s.db.ExecContext(ctx, s.q["create"], source, owner, micros(d)); err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
		}
		held = n > 0
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("sqlcatchup: lease of %q: %w", source, err)
	}
	if !held {
		return "", false, nil
	}
	var cursor string
	if err := s.db.QueryRowContext(ctx, s.q["cursor"], source).Scan(&cursor); err != nil {
		return "", false, fmt.Errorf("sqlcatchup: cursor of %q: %w", source, err)
	}
	return cursor, true, nil
}

// Release implements catchup.Store.
func (s *Store) Release(ctx context.Context, source, owner string) error {
	if s == nil {
		return errors.New("sqlcatchup: Release: nil *Store")
	}
	if _, err := s.db.ExecContext(ctx, s.q["release"], source, owner); err != nil {
		return fmt.Errorf("sqlcatchup: release of %q: %w", source, err)
	}
	return nil
}

// Begin implements catchup.Store: it begins a transaction on the store's
// database (READ COMMITTED on MySQL, so that a page's inbox inserts do not
// take gap locks that deadlock the webhooks' own).
func (s *Store) Begin(ctx context.Context) (steadfast.Tx, error) {
	if s == nil {
		return nil, errors.New("sqlcatchup: Begin: nil *Store")
	}
	var opts *sql.TxOptions
	if s.dialect == steadfast.MySQL {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return tx, nil
}

// Advance implements catchup.Store.
func (s *Store) Advance(ctx context.Context, tx steadfast.Tx, source, owner, cursor string, newest time.Time, d time.Duration) error {
	if s == nil || tx == nil {
		return errors.New("sqlcatchup: Advance: nil *Store or transaction")
	}
	var at int64
	if !newest.IsZero() {
		at = newest.UnixMicro()
	}
	res, err := tx.ExecContext(ctx, s.q["advance"], cursor, at, at, micros(d), source, owner)
	if err != nil {
		return fmt.Errorf("sqlcatchup: advancing the cursor of %q: %w", source, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlcatchup: advancing the cursor of %q: %w", source, err)
	}
	if n == 0 {
		return fmt.Errorf("sqlcatchup: advancing the cursor of %q: %w", source, catchup.ErrLeaseLost)
	}
	return nil
}

func created(ev catchup.Event) int64 {
	if ev.Created.IsZero() {
		return 0
	}
	return ev.Created.UnixMicro()
}

func payload(ev catchup.Event) []byte {
	if ev.Payload == nil {
		return []byte{}
	}
	return ev.Payload
}

// Fail implements catchup.Store.
func (s *Store) Fail(ctx context.Context, source string, ev catchup.Event, reason string) (int, error) {
	if s == nil {
		return 0, errors.New("sqlcatchup: Fail: nil *Store")
	}
	args := []any{source, ev.ID, reason, ev.Type, created(ev), payload(ev), ev.Cursor}
	var attempts int
	err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		if s.dialect != steadfast.MySQL {
			return s.db.QueryRowContext(ctx, s.q["fail"], args...).Scan(&attempts)
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, s.q["fail"], args...); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, s.q["attempts"], source, ev.ID).Scan(&attempts); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return 0, fmt.Errorf("sqlcatchup: recording a failure of event %q of %q: %w", ev.ID, source, err)
	}
	return attempts, nil
}

// Bury implements catchup.Store.
func (s *Store) Bury(ctx context.Context, tx steadfast.Tx, source string, ev catchup.Event, reason string, refused bool) (bool, error) {
	if s == nil || tx == nil {
		return false, errors.New("sqlcatchup: Bury: nil *Store or transaction")
	}
	q := s.q["bury"]
	if refused {
		q = s.q["refuse"]
	}
	res, err := tx.ExecContext(ctx, q, source, ev.ID, reason, ev.Type, created(ev), payload(ev), ev.Cursor)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil {
			return n > 0, nil
		}
	}
	return false, fmt.Errorf("sqlcatchup: making event %q of %q a dead letter: %w", ev.ID, source, err)
}

// Failing implements catchup.Store.
func (s *Store) Failing(ctx context.Context, source string, limit int) ([]string, error) {
	if s == nil {
		return nil, errors.New("sqlcatchup: Failing: nil *Store")
	}
	if limit <= 0 {
		return nil, fmt.Errorf("sqlcatchup: Failing: limit %d must be positive", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q["failing"], source, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlcatchup: failing events of %q: %w", source, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlcatchup: failing events of %q: %w", source, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlcatchup: failing events of %q: %w", source, err)
	}
	return ids, nil
}

// Requeued implements catchup.Store.
func (s *Store) Requeued(ctx context.Context, source string, limit int) ([]catchup.Event, error) {
	if s == nil {
		return nil, errors.New("sqlcatchup: Requeued: nil *Store")
	}
	if limit <= 0 {
		return nil, fmt.Errorf("sqlcatchup: Requeued: limit %d must be positive", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q["requeued"], source, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlcatchup: requeued dead letters of %q: %w", source, err)
	}
	defer rows.Close()
	var out []catchup.Event
	for rows.Next() {
		var (
			ev catchup.Event
			at int64
		)
		if err := rows.Scan(&ev.ID, &ev.Type, &at, &ev.Payload, &ev.Cursor); err != nil {
			return nil, fmt.Errorf("sqlcatchup: requeued dead letters of %q: %w", source, err)
		}
		if at != 0 {
			ev.Created = time.UnixMicro(at)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlcatchup: requeued dead letters of %q: %w", source, err)
	}
	return out, nil
}

// Resolve implements catchup.Store.
func (s *Store) Resolve(ctx context.Context, tx steadfast.Tx, source, eventID string) (bool, error) {
	if s == nil || tx == nil {
		return false, errors.New("sqlcatchup: Resolve: nil *Store or transaction")
	}
	res, err := tx.ExecContext(ctx, s.q["resolve"], source, eventID)
	if err != nil {
		return false, fmt.Errorf("sqlcatchup: resolving event %q of %q: %w", eventID, source, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlcatchup: resolving event %q of %q: %w", eventID, source, err)
	}
	return n > 0, nil
}

// ListDead returns up to limit dead letters (requeued ones included, until
// the poller applied them) of source, or of every source when source is
// empty, with a position above after, in position order. Pass the last
// Position read as after to read on. Each carries its payload (at most
// 1 MiB), so limit is at most 1,000; it returns an error for a limit out of
// 1 to 1,000.
func (s *Store) ListDead(ctx context.Context, source string, after int64, limit int) ([]catchup.DeadLetter, error) {
	if s == nil {
		return nil, errors.New("sqlcatchup: ListDead: nil *Store")
	}
	if limit <= 0 || limit > 1000 {
		return nil, fmt.Errorf("sqlcatchup: ListDead: limit %d must be 1 to 1000", limit)
	}
	rows, err := s.db.QueryContext(ctx, s.q["listDead"], after, source, source, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlcatchup: listing dead letters: %w", err)
	}
	defer rows.Close()
	var out []catchup.DeadLetter
	for rows.Next() {
		var (
			dl          catchup.DeadLetter
			at, updated int64
			state       int
		)
		if err := rows.Scan(&dl.Position, &dl.Source, &dl.ID, &dl.Type, &at, &dl.Payload, &dl.Cursor,
			&state, &dl.Attempts, &dl.LastError, &updated); err != nil {
			return nil, fmt.Errorf("sqlcatchup: listing dead letters: %w", err)
		}
		if at != 0 {
			dl.Created = time.UnixMicro(at)
		}
		dl.UpdatedAt = time.UnixMicro(updated)
		dl.Requeued, dl.Refused = state == 2, state == 3
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlcatchup: listing dead letters: %w", err)
	}
	return out, nil
}

// Requeue makes the dead letters eventIDs of source pending again, with
// their attempts reset: the poller of source applies them at its next pass
// (without the inbox check: their ids were marked when they died). It
// returns how many it requeued; ids that are not dead letters, and refused
// ones (DeadLetter.Refused: they would be refused again), are left alone.
// It is one statement, at most 1,000 ids.
func (s *Store) Requeue(ctx context.Context, source string, eventIDs ...string) (int, error) {
	return s.deadOp(ctx, "Requeue", "requeue", source, eventIDs)
}

// Discard deletes the dead letters eventIDs of source (requeued or not) and
// returns how many it deleted. Their ids stay marked in the inbox: the events
// are never applied. It is one statement, at most 1,000 ids.
func (s *Store) Discard(ctx context.Context, source string, eventIDs ...string) (int, error) {
	return s.deadOp(ctx, "Discard", "discard", source, eventIDs)
}

func (s *Store) deadOp(ctx context.Context, what, query, source string, ids []string) (int, error) {
	if s == nil {
		return 0, fmt.Errorf("sqlcatchup: %s: nil *Store", what)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if len(ids) > 1000 {
		return 0, fmt.Errorf("sqlcatchup: %s: %d ids, at most 1000 at once", what, len(ids))
	}
	q := strings.Replace(s.q[query], "{ids}", strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", "), 1)
	if s.dialect == steadfast.Postgres {
		q = numbered(q, 1)
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, source)
	for _, id := range ids {
		args = append(args, id)
	}
	var n int64
	err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlcatchup: %s: %w", what, err)
	}
	return int(n), nil
}

// Cursors reports where the poller of each source stands (one
// catchup.Cursor per source the store knows, by source name): its cursor,
// the lease holder and what the lease has left, how long ago the cursor was
// stored, the lag (the age of the newest event read, whose creation time
// Advance stores), and its failing events and dead letters. Every figure is
// computed in one statement on the database's clock, so all replicas report
// the same.
func (s *Store) Cursors(ctx context.Context) ([]catchup.Cursor, error) {
	if s == nil {
		return nil, errors.New("sqlcatchup: Cursors: nil *Store")
	}
	rows, err := s.db.QueryContext(ctx, s.q["cursors"])
	if err != nil {
		return nil, fmt.Errorf("sqlcatchup: listing cursors: %w", err)
	}
	defer rows.Close()
	var out []catchup.Cursor
	for rows.Next() {
		var (
			c                catchup.Cursor
			left, since, lag int64
		)
		if err := rows.Scan(&c.Source, &c.Cursor, &c.Owner, &left, &since, &lag, &c.Failing, &c.DeadLetters); err != nil {
			return nil, fmt.Errorf("sqlcatchup: listing cursors: %w", err)
		}
		c.LeaseLeft = time.Duration(left) * time.Microsecond
		c.SinceAdvance = time.Duration(since) * time.Microsecond
		c.Lag = time.Duration(lag) * time.Microsecond
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlcatchup: listing cursors: %w", err)
	}
	return out, nil
}

// SetCursor stores cursor as the cursor of source, for an operator: the
// poller's next pass reads the list after it. A cursor is what the source
// resumes from: for HTTPSource, an event id in the "starting_after" shape
// and for a newest-first list (the events after that event are read), a
// page URL for next-URL and Link-header lists; "" reads from the oldest
// event the provider keeps (the inbox skips what was applied, as long as
// its rows outlive the provider's retention); catchup.Now skips to the end
// of the list: the poller reads from the current cursor to the end without
// applying anything and stores the cursor of the last event (for lists
// whose cursors are pages, the last page is read again, so its events are
// applied). Events skipped this way are never applied by the poller; their
// webhooks still apply them.
//
// It is one statement that also ends the source's lease, so it is safe
// while a poller runs: a page the poller was applying either committed
// before it (PostgreSQL and MySQL make the statement wait for the page's
// lock on the cursor row; SQLite, with one writer at a time, for the write
// lock between two pages) or fails to advance the cursor and is rolled
// back, its effects with it; the poller then takes the lease again at the
// new cursor, a third of its lease later (at its next pass if it was
// between passes). It works before the source's first poller ever ran. It returns an error for a source name
// that is empty, over 255 bytes or not UTF-8 without NUL, and for a cursor
// over 8 KiB or not UTF-8 without NUL.
func (s *Store) SetCursor(ctx context.Context, source, cursor string) error {
	if s == nil {
		return errors.New("sqlcatchup: SetCursor: nil *Store")
	}
	switch {
	case source == "" || len(source) > 255 || !text(source):
		return fmt.Errorf("sqlcatchup: SetCursor: source name %.40q must be 1 to 255 bytes of UTF-8 without NUL", source)
	case len(cursor) > 8<<10 || !text(cursor):
		return fmt.Errorf("sqlcatchup: SetCursor: cursor %.40q must be at most 8 KiB of UTF-8 without NUL", cursor)
	}
	q, args := s.q["setCursor"], []any{source, cursor}
	if cursor == catchup.Now {
		q, args = s.q["skipToEnd"], []any{source}
	}
	err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		_, err := s.db.ExecContext(ctx, q, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlcatchup: setting the cursor of %q: %w", source, err)
	}
	return nil
}

// text reports whether s is UTF-8 without NUL (what every database's text
// holds).
func text(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// PurgeFailing deletes up to batch records of failed attempts (events whose
// handler failed, not yet dead letters) not updated for retention, on the
// database's clock, in one statement, and returns how many it deleted;
// call it again while it deletes a full batch (housekeeping does). The
// poller deletes such a record when it applies the event or finds it
// applied by its webhook; what is left is an event that left the list, a
// source no longer polled, or a cursor an operator moved past it. An event
// still failing is tried at every pass and so updated, unless its poller is
// stopped for longer than retention: its count of attempts then starts
// again. Dead letters are never deleted. It returns an error for a
// retention or a batch that is not positive.
func (s *Store) PurgeFailing(ctx context.Context, retention time.Duration, batch int) (int64, error) {
	if s == nil {
		return 0, errors.New("sqlcatchup: PurgeFailing: nil *Store")
	}
	if retention <= 0 || batch <= 0 {
		return 0, fmt.Errorf("sqlcatchup: PurgeFailing: retention %v and batch %d must be positive", retention, batch)
	}
	var n int64
	err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, s.q["purgeFailing"], micros(retention), batch)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlcatchup: purging records of failed attempts: %w", err)
	}
	return n, nil
}
