package sqlstore_test

import (
	"context"
	"database/sql"
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
