package sqlstore_test

import (
	"testing"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
)

// TestConformance runs idempotency/storetest on every dialect, in real
// time: the database's clock keeps the leases.
func TestConformance(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		db := openDB(t, d, 16)
		shared := newStoreOn(t, db, d) // creates the tables the cases share
		storetest.Run(t, func(t *testing.T) storetest.Harness {
			s, err := sqlstore.New(db, d, sqlstore.WithTable(shared.Table()), sqlstore.WithMaxResponseSize(2<<20))
			if err != nil {
				t.Fatal(err)
			}
			return storetest.Harness{Store: s, MaxResponseBytes: 2 << 20}
		})
	})
}
