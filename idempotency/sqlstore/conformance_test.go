package sqlstore_test

import (
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
)

// TestConformance runs idempotency/storetest on every dialect, with a fake
// clock: the store reads time in Go.
func TestConformance(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d sqlstore.Dialect) {
		db := openDB(t, d, 16)
		shared := newStoreOn(t, db, d) // creates the tables the cases share
		storetest.Run(t, func(t *testing.T) storetest.Harness {
			clock := storetest.NewClock(time.Now())
			s, err := sqlstore.New(db, d, sqlstore.WithTable(shared.Table()), sqlstore.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			return storetest.Harness{Store: s, Advance: clock.Advance}
		})
	})
}
