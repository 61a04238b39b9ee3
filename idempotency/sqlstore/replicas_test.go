package sqlstore_test

import (
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
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
			forEachDialect(t, func(t *testing.T, d sqlstore.Dialect) {
				events := 1000
				if testing.Short() {
					events = 150
				}
				shared := newStore(t, d, 2)
				biz := businessTable(t, shared)
				runs := make([]atomic.Int32, events)
				var replicas []http.Handler
				for r := 0; r < 4; r++ {
					db := shared.DB()
					if d != sqlstore.SQLite || r > 0 {
						db = openDBLike(t, d, shared, 4)
					}
					s, err := sqlstore.New(db, d, sqlstore.WithTable(shared.Table()))
					if err != nil {
						t.Fatal(err)
					}
					opts := []idempotency.Option{
						idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")),
						idempotency.WithWait(30 * time.Second),
					}
					if tx {
						opts = append(opts, idempotency.WithTransaction())
					}
					mw, err := idempotency.Middleware(s, opts...)
					if err != nil {
						t.Fatal(err)
					}
					ins := insertSQL(d, biz)
					replicas = append(replicas, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						var n int
						fmt.Sscan(strings.TrimPrefix(r.Header.Get("webhook-id"), "evt_"), &n)
						runs[n].Add(1)
						if tx {
							if _, err := sqlstore.TxFrom(r.Context()).ExecContext(r.Context(), ins, r.Header.Get("webhook-id"), n); err != nil {
								http.Error(w, err.Error(), http.StatusInternalServerError)
								return
							}
						}
						fmt.Fprintf(w, "handled %d by replica", n)
					})))
				}
				deliver := func(event, replica int) error {
					for attempt := 0; ; attempt++ {
						req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(fmt.Sprintf(`{"event":%d}`, event)))
						req.Header.Set("webhook-id", fmt.Sprintf("evt_%d", event))
						rec := httptest.NewRecorder()
						replicas[(replica+attempt)%len(replicas)].ServeHTTP(rec, req)
						body, _ := io.ReadAll(rec.Body)
						switch {
						case rec.Code == http.StatusOK && string(body) == fmt.Sprintf("handled %d by replica", event):
							return nil
						case rec.Code == http.StatusConflict || rec.Code == http.StatusServiceUnavailable:
							if attempt > 100 {
								return fmt.Errorf("event %d: still %d after %d attempts: %s", event, rec.Code, attempt, body)
							}
							time.Sleep(time.Millisecond)
						default:
							return fmt.Errorf("event %d: %d %s", event, rec.Code, body)
						}
					}
				}
				work := make(chan int)
				errs := make(chan error, 3*events)
				var wg sync.WaitGroup
				for w := 0; w < 8; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for e := range work {
							first := rand.IntN(4)
							var pair sync.WaitGroup
							pair.Add(2)
							go func() { defer pair.Done(); errs <- deliver(e, first) }()
							go func() { defer pair.Done(); errs <- deliver(e, first+1) }()
							pair.Wait()
							errs <- deliver(e, first+2) // a later redelivery
						}
					}()
				}
				for e := 0; e < events; e++ {
					work <- e
				}
				close(work)
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				for e := range runs {
					if n := runs[e].Load(); n != 1 {
						t.Fatalf("event %d: handler ran %d times, want 1", e, n)
					}
				}
				if tx {
					var rows int
					if err := shared.DB().QueryRow("SELECT COUNT(*) FROM " + biz).Scan(&rows); err != nil {
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
func openDBLike(t *testing.T, d sqlstore.Dialect, s *sqlstore.Store, conns int) *sql.DB {
	t.Helper()
	if d != sqlstore.SQLite {
		return openDB(t, d, conns)
	}
	var file string
	rows, err := s.DB().Query("PRAGMA database_list")
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
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(file))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	t.Cleanup(func() { db.Close() })
	return db
}
