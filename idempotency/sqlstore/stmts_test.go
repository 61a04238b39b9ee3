package sqlstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// TestStatementsInTxOnOneConnection: the store's statements run inside a
// transaction that holds the pool's only connection, repeatedly, and each
// sees the state the one before left (a statement prepared for a
// transaction must never wait for a second connection).
func TestStatementsInTxOnOneConnection(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s := newStore(t, d, 1)
		for i := range 3 {
			dup, err := s.Process(ctx, "c", "m", func(context.Context, *sql.Tx) error { return nil })
			if err != nil || dup != (i > 0) {
				t.Fatalf("Process #%d = %v, %v; want duplicate %v", i, dup, err, i > 0)
			}
		}
		for i, key := range []string{"k1", "k2", "k3"} {
			tx, err := sqlstore.DBOf(s).BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.ClaimIn(ctx, tx, key, "fp", time.Minute)
			if err != nil || !c.Acquired {
				t.Fatalf("ClaimIn #%d = %+v, %v", i, c, err)
			}
			if err := s.CompleteIn(ctx, tx, key, c.Token, []byte("r"), time.Hour); err != nil {
				t.Fatalf("CompleteIn #%d = %v", i, err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			rec, err := s.Get(ctx, key)
			if err != nil || rec.Status != idempotency.StatusCompleted || string(rec.Response) != "r" {
				t.Fatalf("Get #%d = %+v, %v", i, rec, err)
			}
		}
	})
}

// TestStatementsBeforeMigrate: a store used before its tables exist
// returns errors (its statements cannot be prepared yet), and works once
// they do.
func TestStatementsBeforeMigrate(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db := openDB(t, d, 2)
		s, err := sqlstore.New(db, d, sqlstore.WithTable(uniqueTable(t)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Claim(ctx, "k", "fp", time.Minute); err == nil {
			t.Fatal("Claim before Migrate succeeded")
		}
		if _, err := s.Get(ctx, "k"); err == nil {
			t.Fatal("Get before Migrate succeeded")
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, suffix := range []string{"", "_inbox", "_order"} {
				_, _ = db.Exec("DROP TABLE IF EXISTS " + s.Table() + suffix)
			}
			_, _ = db.Exec("DROP FUNCTION IF EXISTS " + s.Table() + "_claim")
		})
		c, err := s.Claim(ctx, "k", "fp", time.Minute)
		if err != nil || !c.Acquired {
			t.Fatalf("Claim = %+v, %v", c, err)
		}
		if err := s.Complete(ctx, "k", c.Token, []byte("r"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if rec, err := s.Get(ctx, "k"); err != nil || string(rec.Response) != "r" {
			t.Fatalf("Get = %+v, %v", rec, err)
		}
	})
}

// TestStatementsInAnotherPoolsTx: a caller's transaction may come from a
// *sql.DB other than the store's (a pool of its own on the same
// database): the store's statements, prepared on its own pool, run there
// as text (database/sql refuses a statement of another pool in a
// transaction).
func TestStatementsInAnotherPoolsTx(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var mine, theirs *sql.DB
		if d == steadfast.SQLite {
			path := filepath.Join(t.TempDir(), "shared.db")
			for _, db := range []**sql.DB{&mine, &theirs} {
				var err error
				if *db, err = sql.Open("sqlite", steadfast.SQLiteDSN(path)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { (*db).Close() })
			}
		} else {
			mine, theirs = openDB(t, d, 4), openDB(t, d, 4)
		}
		s, err := sqlstore.New(mine, d, sqlstore.WithTable(uniqueTable(t)))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for _, suffix := range []string{"", "_inbox", "_order"} {
				_, _ = mine.Exec("DROP TABLE IF EXISTS " + s.Table() + suffix)
			}
			_, _ = mine.Exec("DROP FUNCTION IF EXISTS " + s.Table() + "_claim")
		})
		// The first uses prepare the statements on the store's pool (in
		// the background for those first run in a transaction); the later
		// ones find them prepared.
		for i := range 20 {
			id := "m" + strconv.Itoa(i)
			if _, err := s.Process(ctx, "c", id+"-own", func(context.Context, *sql.Tx) error { return nil }); err != nil {
				t.Fatalf("Process #%d: %v", i, err)
			}
			tx, err := theirs.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			first, err := s.MarkProcessed(ctx, tx, "c", id)
			if err != nil || !first {
				t.Fatalf("MarkProcessed #%d in another pool's transaction = %v, %v", i, first, err)
			}
			c, err := s.ClaimIn(ctx, tx, id, "fp", time.Minute)
			if err != nil || !c.Acquired {
				t.Fatalf("ClaimIn #%d = %+v, %v", i, c, err)
			}
			if err := s.CompleteIn(ctx, tx, id, c.Token, []byte("r"), time.Hour); err != nil {
				t.Fatalf("CompleteIn #%d = %v", i, err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // room for the background preparation
		}
	})
}
