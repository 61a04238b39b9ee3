package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// TestDeadlocksNeverDoubleRun: two transactions claim the same two keys in
// opposite orders, which deadlocks on PostgreSQL and MySQL/MariaDB (and
// contends for the write lock on SQLite). The database aborts one; it is
// retried whole with sqldb.Retry and then replays. Each pair of keys is
// worked exactly once, and the deadlocks are really there (counted).
func TestDeadlocksNeverDoubleRun(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)
		pairs := 30
		if testing.Short() {
			pairs = 8
		}
		var (
			mu        sync.Mutex
			runs      = map[string]int{}
			conflicts int
		)
		work := func(k1, k2, pair string) error {
			return sqldb.Retry(ctx, sqldb.RetryPolicy{Attempts: 20}, func(ctx context.Context) error {
				tx, err := sqlstore.DBOf(s).BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer func() { _ = tx.Rollback() }()
				var tokens []int64
				for _, k := range []string{k1, k2} {
					c, err := s.ClaimIn(ctx, tx, k, "fp", lease)
					if err != nil {
						if sqldb.IsRetryable(err) {
							mu.Lock()
							conflicts++
							mu.Unlock()
						}
						return err
					}
					if !c.Acquired {
						if c.Record.Status != idempotency.StatusCompleted {
							return fmt.Errorf("key %s in progress outside a transaction: %+v", k, c.Record)
						}
						return nil // the other transaction did the work
					}
					tokens = append(tokens, c.Token)
				}
				for i, k := range []string{k1, k2} {
					if err := s.CompleteIn(ctx, tx, k, tokens[i], []byte(pair), retention); err != nil {
						return err
					}
				}
				if err := tx.Commit(); err != nil {
					return err
				}
				mu.Lock()
				runs[pair]++
				mu.Unlock()
				return nil
			})
		}
		for p := 0; p < pairs; p++ {
			pair := fmt.Sprintf("p%d", p)
			a, b := pair+"-a", pair+"-b"
			var wg sync.WaitGroup
			errs := make([]error, 2)
			wg.Add(2)
			go func() { defer wg.Done(); errs[0] = work(a, b, pair) }()
			go func() { defer wg.Done(); errs[1] = work(b, a, pair) }()
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("pair %s: %v", pair, err)
			}
			if runs[pair] != 1 {
				t.Fatalf("pair %s ran %d times, want 1", pair, runs[pair])
			}
		}
		t.Logf("%v: %d deadlocks/busy errors retried over %d pairs", d, conflicts, pairs)
	})
}

// TestSQLiteBusyIsRetried: without the IMMEDIATE transactions of SQLiteDSN
// and with a 20 ms busy timeout, concurrent Process calls whose handlers read
// and write contend for SQLite's single write lock. Whatever busy errors
// occur are retried whole; every message's effect commits exactly once, and a
// call that still fails says so clearly. (internal/sqldb's tests provoke
// SQLITE_BUSY deterministically and check its classification.)
func TestSQLiteBusyIsRetried(t *testing.T) {
	t.Parallel()
	dsn := "file:" + t.TempDir() + "/busy.db?_journal_mode=WAL&_busy_timeout=20"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	s := newStoreOn(t, db, steadfast.SQLite, sqlstore.WithRetryAttempts(50))
	biz := businessTable(t, s)
	ctx := context.Background()
	const messages, deliveries = 10, 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firsts  int
		attempt int
	)
	errs := make(chan error, messages*deliveries)
	for i := 0; i < messages*deliveries; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("m%d", i%messages)
			dup, err := s.Process(ctx, "c", id, func(ctx context.Context, tx *sql.Tx) error {
				mu.Lock()
				attempt++
				mu.Unlock()
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+biz).Scan(&n); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, insertSQL(steadfast.SQLite, biz), id, n)
				return err
			})
			if err == nil && !dup {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		var ex *sqldb.RetryExhaustedError
		if err != nil && !errors.As(err, &ex) {
			t.Fatalf("Process: %v (want nil, or a clear RetryExhaustedError)", err)
		}
	}
	for m := 0; m < messages; m++ {
		if n := countRows(t, db, biz, fmt.Sprintf("m%d", m)); n > 1 {
			t.Fatalf("message m%d applied %d times", m, n)
		}
	}
	var rows int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + biz).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != firsts {
		t.Fatalf("%d effects committed, %d calls reported a first processing", rows, firsts)
	}
	t.Logf("%d handler runs for %d committed effects (the rest were rolled back by busy errors and retried)", attempt, rows)
}
