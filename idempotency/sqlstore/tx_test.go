package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// businessTable creates a table for the "business writes" of a test.
func businessTable(t testing.TB, s *sqlstore.Store) string {
	t.Helper()
	name := uniqueTable(t)
	if _, err := sqlstore.DBOf(s).Exec("CREATE TABLE " + name + " (id VARCHAR(64) NOT NULL, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = sqlstore.DBOf(s).Exec("DROP TABLE IF EXISTS " + name) })
	return name
}

func countRows(t *testing.T, db *sql.DB, table, id string) int {
	t.Helper()
	var n int
	q := "SELECT COUNT(*) FROM " + table + " WHERE id = ?"
	if err := db.QueryRow(q, id).Scan(&n); err != nil {
		q = "SELECT COUNT(*) FROM " + table + " WHERE id = $1"
		if err2 := db.QueryRow(q, id).Scan(&n); err2 != nil {
			t.Fatal(err, err2)
		}
	}
	return n
}

func insertSQL(d steadfast.Dialect, table string) string {
	if d == steadfast.Postgres {
		return "INSERT INTO " + table + " (id, n) VALUES ($1, $2)"
	}
	return "INSERT INTO " + table + " (id, n) VALUES (?, ?)"
}

// TestTxRollbackLeavesNothing: a handler whose transaction rolls back leaves
// no record and no business row, and its retry runs again.
func TestTxRollbackLeavesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)
		biz := businessTable(t, s)

		tx, c, err := s.BeginTx(ctx, "order-1", "fp", lease)
		if err != nil || !c.Acquired || tx == nil {
			t.Fatalf("ClaimTx = %v, %+v, %v", tx, c, err)
		}
		sqlTx := tx.SQL()
		if _, err := sqlTx.ExecContext(ctx, insertSQL(d, biz), "order-1", 1); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "order-1"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("record after rollback: %v, want ErrNotFound", err)
		}
		if n := countRows(t, sqlstore.DBOf(s), biz, "order-1"); n != 0 {
			t.Fatalf("%d business rows after rollback, want 0", n)
		}
		// The retry runs again and commits.
		tx, c, err = s.BeginTx(ctx, "order-1", "fp", lease)
		if err != nil || !c.Acquired {
			t.Fatalf("retry ClaimTx = %+v, %v; want acquired", c, err)
		}
		if _, err := tx.SQL().ExecContext(ctx, insertSQL(d, biz), "order-1", 2); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx, []byte("created"), retention, false); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, sqlstore.DBOf(s), biz, "order-1"); n != 1 {
			t.Fatalf("%d business rows after commit, want 1", n)
		}
	})
}

// TestTxCrashAfterCommitReplays: a process that committed and then died
// before answering leaves a completed record; the retry replays it and runs
// nothing.
func TestTxCrashAfterCommitReplays(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)
		biz := businessTable(t, s)

		tx, c, err := s.BeginTx(ctx, "pay-1", "fp", lease)
		if err != nil || !c.Acquired {
			t.Fatalf("ClaimTx = %+v, %v", c, err)
		}
		if _, err := tx.SQL().ExecContext(ctx, insertSQL(d, biz), "pay-1", 1); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx, []byte("paid"), retention, false); err != nil {
			t.Fatal(err)
		}
		// "Crash": the response is never written. A second replica with a
		// store of its own on the same tables gets the retry.
		tx2, c2, err := s.BeginTx(ctx, "pay-1", "fp", lease)
		if err != nil || c2.Acquired || tx2 != nil {
			t.Fatalf("retry ClaimTx = %v, %+v, %v; want a replay", tx2, c2, err)
		}
		if c2.Record.Status != idempotency.StatusCompleted || string(c2.Record.Response) != "paid" {
			t.Fatalf("retry sees %+v, want the committed response", c2.Record)
		}
		if n := countRows(t, sqlstore.DBOf(s), biz, "pay-1"); n != 1 {
			t.Fatalf("%d business rows, want 1", n)
		}
	})
}

// TestTxDuplicateWaitsForCommit: a concurrent claimer of a key held by an
// open transaction waits for it, then replays (after commit) or claims
// (after rollback).
func TestTxDuplicateWaitsForCommit(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			t.Parallel()
			forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
				ctx := context.Background()
				s := newStore(t, d, 4)
				tx, c, err := s.BeginTx(ctx, "k", "fp", lease)
				if err != nil || !c.Acquired {
					t.Fatalf("ClaimTx = %+v, %v", c, err)
				}
				type result struct {
					c   idempotency.Claim
					err error
				}
				done := make(chan result, 1)
				go func() {
					c, err := s.Claim(ctx, "k", "fp", lease)
					done <- result{c, err}
				}()
				// The duplicate either waits on the row lock or runs after
				// the transaction ended: either way it sees only the
				// outcome, never the open claim.
				if commit {
					err = tx.Commit(ctx, []byte("r"), retention, false)
				} else {
					err = tx.Rollback(ctx)
				}
				if err != nil {
					t.Fatal(err)
				}
				r := <-done
				if r.err != nil {
					t.Fatal(r.err)
				}
				if commit && (r.c.Acquired || r.c.Record.Status != idempotency.StatusCompleted || string(r.c.Record.Response) != "r") {
					t.Fatalf("duplicate after commit = %+v, want the completed record", r.c)
				}
				if !commit && !r.c.Acquired {
					t.Fatalf("duplicate after rollback = %+v, want acquired", r.c)
				}
			})
		})
	}
}

// TestInboxConcurrentDelivery: the same message delivered concurrently to
// several consumer instances applies its effect once.
func TestInboxConcurrentDelivery(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 8)
		biz := businessTable(t, s)
		messages, deliveries := 100, 4
		if testing.Short() {
			messages = 20
		}
		var effects, duplicates atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, messages*deliveries)
		for m := 0; m < messages; m++ {
			id := fmt.Sprintf("msg-%d", m)
			for i := 0; i < deliveries; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					dup, err := s.Process(ctx, "billing", id, func(ctx context.Context, tx *sql.Tx) error {
						_, err := tx.ExecContext(ctx, insertSQL(d, biz), id, 1)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
					if dup {
						duplicates.Add(1)
					} else {
						effects.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if effects.Load() != int64(messages) || duplicates.Load() != int64(messages*(deliveries-1)) {
			t.Fatalf("effects %d, duplicates %d; want %d and %d", effects.Load(), duplicates.Load(), messages, messages*(deliveries-1))
		}
		var rows int
		if err := sqlstore.DBOf(s).QueryRow("SELECT COUNT(*) FROM " + biz).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != messages {
			t.Fatalf("%d business rows, want %d", rows, messages)
		}
		// Another consumer processes the same message independently.
		dup, err := s.Process(ctx, "audit", "msg-0", func(context.Context, *sql.Tx) error { return nil })
		if err != nil || dup {
			t.Fatalf("other consumer: duplicate=%v, %v; want first", dup, err)
		}
	})
}

// TestInboxFailedHandlerRunsAgain: fn's error rolls the mark back.
func TestInboxFailedHandlerRunsAgain(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 2)
		boom := errors.New("boom")
		if _, err := s.Process(ctx, "c", "m", func(context.Context, *sql.Tx) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("Process = %v, want boom", err)
		}
		ran := false
		dup, err := s.Process(ctx, "c", "m", func(context.Context, *sql.Tx) error { ran = true; return nil })
		if err != nil || dup || !ran {
			t.Fatalf("redelivery: dup=%v ran=%v err=%v; want it to run", dup, ran, err)
		}
	})
}

// TestOrderingGuardShuffled: events 1..100 for one entity delivered shuffled,
// from concurrent workers, leave the entity at version 100, and every event
// that arrives after a newer one is reported stale.
func TestOrderingGuardShuffled(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)
		const n = 100
		order := rand.Perm(n)
		var (
			mu      sync.Mutex
			applied []int64
			stale   int
		)
		work := make(chan int64)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for v := range work {
					err := retryTx(ctx, sqlstore.DBOf(s), func(tx *sql.Tx) error {
						ok, err := s.ApplyVersion(ctx, tx, "order-42", v)
						if err != nil {
							return err
						}
						mu.Lock()
						if ok {
							applied = append(applied, v)
						} else {
							stale++
						}
						mu.Unlock()
						return nil
					})
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		for _, i := range order {
			work <- int64(i + 1)
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(applied)+stale != n {
			t.Fatalf("applied %d + stale %d != %d", len(applied), stale, n)
		}
		for i := 1; i < len(applied); i++ {
			if applied[i] <= applied[i-1] {
				t.Fatalf("applied out of order: %v", applied)
			}
		}
		if applied[len(applied)-1] != n {
			t.Fatalf("last applied %d, want %d", applied[len(applied)-1], n)
		}
		// Replays of any version, 100 included, are stale now.
		for _, v := range []int64{1, 50, 100} {
			tx, _ := sqlstore.DBOf(s).BeginTx(ctx, nil)
			ok, err := s.ApplyVersion(ctx, tx, "order-42", v)
			_ = tx.Rollback()
			if err != nil || ok {
				t.Fatalf("ApplyVersion(%d) after 100 = %v, %v; want stale", v, ok, err)
			}
		}
	})
}

// retryTx runs fn in a transaction, again after a rollback for a conflict the
// "caller" would retry (applied bookkeeping only happens on commit paths that
// succeed, so the test counts each event once).
func retryTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err = fn(tx); err == nil {
			return tx.Commit()
		}
		_ = tx.Rollback()
		if attempt > 10 {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOrderingGuardTimestamp(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 2)
		t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
		steps := []struct {
			at   time.Time
			tie  string
			want bool
		}{
			{t0, "b", true},
			{t0, "a", false},                         // same time, smaller tie-break
			{t0, "b", false},                         // the same event again
			{t0, "c", true},                          // same time, greater tie-break
			{t0.Add(-time.Nanosecond), "z", false},   // older
			{t0.Add(time.Nanosecond), "", true},      // newer by 1 ns
			{t0.Add(time.Nanosecond), "B", true},     // byte-wise: "B" > ""
			{t0.Add(time.Nanosecond), "AAAA", false}, // "AAAA" < "B"
		}
		for i, st := range steps {
			tx, err := sqlstore.DBOf(s).BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := s.ApplyTimestamp(ctx, tx, "e", st.at, st.tie)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if ok != st.want {
				t.Errorf("step %d (%v, %q): applied = %v, want %v", i, st.at, st.tie, ok, st.want)
			}
		}
	})
}

// TestPurgeWhileClaiming: Purge removes only expired records, in batches,
// while other goroutines keep claiming and completing.
func TestPurgeWhileClaiming(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 6)
		expired, live := 300, 100
		if testing.Short() {
			expired, live = 60, 20
		}
		for i := 0; i < expired; i++ {
			key := fmt.Sprintf("old-%d", i)
			c, err := s.Claim(ctx, key, "fp", lease)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Complete(ctx, key, c.Token, []byte("x"), short); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(short)
		// New claims go on during the purge; they are live.
		var wg sync.WaitGroup
		errs := make(chan error, live)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < live; i += 4 {
					key := fmt.Sprintf("new-%d", i)
					c, err := s.Claim(ctx, key, "fp", lease)
					if err == nil && c.Acquired {
						err = s.Complete(ctx, key, c.Token, []byte("y"), retention)
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		purged, err := s.Purge(ctx, 25)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if purged != int64(expired) {
			t.Fatalf("purged %d, want %d", purged, expired)
		}
		for i := 0; i < live; i++ {
			if _, err := s.Get(ctx, fmt.Sprintf("new-%d", i)); err != nil {
				t.Fatalf("live record new-%d: %v", i, err)
			}
		}
		if _, err := sqlstore.Lookup(ctx, s, "old-0"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("expired record after purge: %v", err)
		}
		if n, err := s.Purge(ctx, 25); err != nil || n != 0 {
			t.Fatalf("second purge = %d, %v; want 0", n, err)
		}
		// PurgeInbox keeps recent entries.
		if _, err := s.Process(ctx, "c", "m", func(context.Context, *sql.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if n, err := s.PurgeInbox(ctx, time.Hour, 10); err != nil || n != 0 {
			t.Fatalf("PurgeInbox(an hour) = %d, %v; want 0", n, err)
		}
		time.Sleep(10 * time.Millisecond)
		if n, err := s.PurgeInbox(ctx, time.Millisecond, 10); err != nil || n != 1 {
			t.Fatalf("PurgeInbox(a millisecond) = %d, %v; want 1", n, err)
		}
		if _, err := s.PurgeInbox(ctx, 0, 10); !errors.Is(err, idempotency.ErrInvalid) {
			t.Fatalf("PurgeInbox(0) = %v; want ErrInvalid", err)
		}
	})
}

// TestTxNewKeysNeverHeld: a brand-new key claimed in transactional mode is
// acquired, whatever other transactions claim beside it. 16 workers claim
// random new keys on one table; on MariaDB each keeps its last two claims'
// transactions open (requests in flight) and commits the oldest, elsewhere
// each claim is committed before the next (SQLite runs one transaction at a
// time). Keys, fingerprints and responses are long, so that the table's
// pages split often.
//
// MariaDB's claim waits for no lock and took every lock wait for the key's
// own row held by another transaction; but a page split hands the record
// locks of the new right page's first row to the end of the left page as a
// gap lock, and a new key inserted there waited on it and was answered in
// progress (409): 9 to 25 of 3,200 keys in every run. PostgreSQL's claim
// waits 20ms, and a new key's insert can wait that long for the lock that
// extends the table on a loaded server: 11 to 39 of 3,200 keys.
func TestTxNewKeysNeverHeld(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		workers, depth, claims := 16, 2, 6400
		if testing.Short() {
			claims = 3200
		}
		switch d {
		case steadfast.Postgres:
			// What a new key's claim waits for there does not depend on
			// other claims in flight; and the server serves 100
			// connections to every test that runs meanwhile.
			depth = 0
		case steadfast.SQLite:
			// One transaction at a time: no gaps to wait for, and the
			// slowest claims.
			depth, claims = 0, claims/2
		}
		pad := strings.Repeat("k", 900)
		fp, resp := strings.Repeat("f", 255), bytes.Repeat([]byte("r"), 2000)
		ctx := context.Background()
		s := newStore(t, d, workers*(depth+1))
		var (
			wg   sync.WaitGroup
			held atomic.Int64
			errs = make(chan error, 2*workers)
		)
		for range workers {
			wg.Go(func() {
				var open []idempotency.ClaimTx
				defer func() {
					for _, tx := range open {
						if err := tx.Commit(ctx, resp, retention, false); err != nil {
							errs <- err
						}
					}
				}()
				for range claims / workers {
					key := fmt.Sprintf("new-%016x-%s", rand.Uint64(), pad)
					tx, c, err := s.BeginTx(ctx, key, fp, lease)
					if err != nil {
						errs <- err
						return
					}
					if !c.Acquired {
						if n := held.Add(1); n <= 3 {
							t.Errorf("the new key %.20s... is not acquired: %+v", key, c.Record.Status)
						}
						continue
					}
					open = append(open, tx)
					if len(open) > depth {
						if err := open[0].Commit(ctx, resp, retention, false); err != nil {
							errs <- err
							return
						}
						open = open[1:]
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := held.Load(); n > 0 {
			t.Fatalf("%d of %d new keys were reported held by another transaction", n, claims)
		}
	})
}
