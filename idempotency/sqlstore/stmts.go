package sqlstore

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast"
)

// stmtCache holds the store's prepared statements, one *sql.Stmt per
// statement text, prepared on first use. Only the store's fixed statements
// are prepared (a few per store: MySQL's max_prepared_stmt_count is never
// approached), each once per pooled connection by database/sql. SQLite's
// driver compiles a statement each time it runs one that is not prepared,
// and MySQL's driver prepares and closes one per call, so a prepared
// statement saves most of a replay's time on both. PostgreSQL's driver
// (pgx's stdlib) caches its statements already: nothing is prepared there.
//
// The statements are closed once the store is unreachable (the store has no
// Close); closing the *sql.DB frees them as well.
type stmtCache struct {
	m sync.Map // statement text -> *sql.Stmt
	// pending holds the texts being prepared for a transaction (see
	// stmtOn).
	pending sync.Map
}

func (c *stmtCache) close() {
	c.m.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close()
		c.m.Delete(k)
		return true
	})
}

// prepared returns the pool's prepared statement of text, or nil when it
// cannot be prepared (say, before Migrate): the caller then runs text as
// is, and the next call tries again.
func (s *Store) prepared(ctx context.Context, text string) *sql.Stmt {
	if v, ok := s.stmts.m.Load(text); ok {
		return v.(*sql.Stmt)
	}
	st, err := s.db.PrepareContext(ctx, text)
	if err != nil {
		return nil
	}
	if v, loaded := s.stmts.m.LoadOrStore(text, st); loaded {
		_ = st.Close()
		return v.(*sql.Stmt)
	}
	return st
}

// stmtOn returns the prepared statement of text to run on q (the pool or a
// *sql.Tx), and done, to call once the statement's rows are closed; it
// returns nil when text is to be run on q as is (PostgreSQL, a caller's Tx
// that is not a *sql.Tx, or a statement that could not be prepared). text
// must be one of the store's fixed statements, never one built from input.
func (s *Store) stmtOn(ctx context.Context, q querier, text string) (st *sql.Stmt, done func()) {
	if s.dialect == steadfast.Postgres {
		return nil, nil
	}
	switch q := q.(type) {
	case *sql.DB:
		if q != s.db {
			return nil, nil
		}
		if st := s.prepared(ctx, text); st != nil {
			return st, func() {}
		}
	case *sql.Tx:
		if v, ok := s.stmts.m.Load(text); ok {
			// Reuses the statement where it is prepared on the
			// transaction's connection already, and prepares it there
			// for good otherwise.
			ts := q.StmtContext(ctx, v.(*sql.Stmt))
			return ts, func() { _ = ts.Close() }
		}
		// Preparing on the pool here would wait for a free connection
		// while holding one: when every connection is in a transaction
		// doing the same, none would ever be free. The statement is
		// prepared on the pool in the background instead, and this one
		// runs as is.
		s.prepareLater(text)
	}
	return nil, nil
}

// prepareLater prepares text on the pool in a goroutine of its own, giving
// up after a while (the next use tries again).
func (s *Store) prepareLater(text string) {
	if _, busy := s.stmts.pending.LoadOrStore(text, true); busy {
		return
	}
	go func() {
		defer s.stmts.pending.Delete(text)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.prepared(ctx, text)
	}()
}

// foreignTx reports whether err says that a statement prepared on the
// store's pool was used in a transaction of another *sql.DB (a caller may
// run its business transactions on a pool of its own). database/sql
// refuses it before any round trip, with an error it does not export.
func foreignTx(err error) bool {
	return err != nil && err.Error() == "sql: Tx.Stmt: statement from different database used"
}

// exec runs the fixed statement text on q, prepared where it can be.
func (s *Store) exec(ctx context.Context, q querier, text string, args ...any) (sql.Result, error) {
	st, done := s.stmtOn(ctx, q, text)
	if st == nil {
		return q.ExecContext(ctx, text, args...)
	}
	res, err := st.ExecContext(ctx, args...)
	done()
	if foreignTx(err) {
		return q.ExecContext(ctx, text, args...)
	}
	return res, err
}

// query runs the fixed statement text on q, prepared where it can be; call
// done once rows are closed.
func (s *Store) query(ctx context.Context, q querier, text string, args ...any) (rows *sql.Rows, done func(), err error) {
	st, done := s.stmtOn(ctx, q, text)
	if st == nil {
		rows, err = q.QueryContext(ctx, text, args...)
		return rows, func() {}, err
	}
	rows, err = st.QueryContext(ctx, args...)
	if err != nil {
		done()
		if foreignTx(err) {
			rows, err = q.QueryContext(ctx, text, args...)
			return rows, func() {}, err
		}
		return nil, func() {}, err
	}
	return rows, done, nil
}
