package sqlstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
)

// TestPurgeGuard: ordering-guard rows not advanced for longer than the
// retention are deleted, by the database's clock; rows advanced since are
// kept, and a purged entity's next event is applied as if new (which is why
// housekeeping runs it only on opt-in).
func TestPurgeGuard(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		db := openDB(t, d, 4)
		s := newStoreOn(t, db, d)
		apply := func(entity string, version int64) bool {
			t.Helper()
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback() }()
			ok, err := s.ApplyVersion(ctx, tx, entity, version)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			return ok
		}
		const old, fresh = 7, 3
		for i := 0; i < old; i++ {
			apply(fmt.Sprintf("old-%d", i), 5)
		}
		time.Sleep(1200 * time.Millisecond)
		for i := 0; i < fresh; i++ {
			apply(fmt.Sprintf("fresh-%d", i), 5)
		}
		if _, err := s.PurgeGuard(ctx, 0, 10); err == nil {
			t.Fatal("PurgeGuard with a zero retention: want an error")
		}
		n, err := s.PurgeGuard(ctx, time.Second, 2) // batches of 2: repeats until done
		if err != nil {
			t.Fatal(err)
		}
		if n != old {
			t.Fatalf("PurgeGuard removed %d rows, want %d", n, old)
		}
		if apply("fresh-0", 4) {
			t.Fatal("a kept guard row no longer refuses a stale event")
		}
		if !apply("old-0", 4) {
			t.Fatal("a purged entity's event was refused: the row is still there")
		}
	})
}
