package sqlstore_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// TestReplicasExactlyOnce: four middleware instances ("replicas"), each with
// its own connection pool and store on one shared database, receive 1,000
// distinct webhook events, each delivered 3 times, two of the three
// deliveries concurrently and to different replicas. Every delivery ends in
// 200 with the first run's body, and each event's handler runs exactly once.
// In transactional mode the handler's own row commits with the record.
func TestReplicasExactlyOnce(t *testing.T) {
	for _, tx := range []bool{false, true} {
		t.Run(fmt.Sprintf("tx=%v", tx), func(t *testing.T) {
			t.Parallel()
			forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
				shared := newStore(t, d, 2)
				biz := businessTable(t, shared)
				c := durabletest.ExactlyOnce{
					Store: func(t *testing.T, r int) idempotency.Store {
						db := sqlstore.DBOf(shared)
						if d != steadfast.SQLite || r > 0 {
							db = openDBLike(t, d, shared, 4)
						}
						s, err := sqlstore.New(db, d, sqlstore.WithTable(shared.Table()))
						if err != nil {
							t.Fatal(err)
						}
						return s
					},
					Retry: durabletest.Retry{
						Codes:   []int{http.StatusConflict, http.StatusServiceUnavailable},
						Retries: 101,
						Pause:   time.Millisecond,
					},
				}
				if tx {
					ins := insertSQL(d, biz)
					c.Options = []idempotency.Option{idempotency.WithTransaction()}
					c.Effect = func(r *http.Request, n int) error {
						_, err := mustTx(r.Context()).ExecContext(r.Context(), ins, durabletest.EventID(n), n)
						return err
					}
				}
				events := c.Run(t)
				if tx {
					var rows int
					if err := sqlstore.DBOf(shared).QueryRow("SELECT COUNT(*) FROM " + biz).Scan(&rows); err != nil {
						t.Fatal(err)
					}
					if rows != events {
						t.Fatalf("%d business rows, want %d", rows, events)
					}
				}
			})
		})
	}
}

// openDBLike opens another pool on the database of s (for SQLite, the same
// file).
func openDBLike(t *testing.T, d steadfast.Dialect, s *sqlstore.Store, conns int) *sql.DB {
	t.Helper()
	if d != steadfast.SQLite {
		return openDB(t, d, conns)
	}
	var file string
	rows, err := sqlstore.DBOf(s).Query("PRAGMA database_list")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var seq int
		var name, path string
		if err := rows.Scan(&seq, &name, &path); err != nil {
			t.Fatal(err)
		}
		if name == "main" {
			file = path
		}
	}
	rows.Close()
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(file))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	t.Cleanup(func() { db.Close() })
	return db
}
