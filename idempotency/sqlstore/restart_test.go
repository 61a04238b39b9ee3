package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"testing"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testserver"
)

// TestPostgresRestartMidRun: a PostgreSQL cluster of the test's own is
// stopped while four replicas handle webhook deliveries, and started again.
// During the outage, events sent for the first time get 503 and run no
// handler; afterwards the replicas recover by themselves and every delivery
// ends in 200. Without the transactional path, only events whose handler was
// running when the server went down may run twice (counted and reported);
// with it, every event's effect commits exactly once.
func TestPostgresRestartMidRun(t *testing.T) {
	pg := testserver.StartPostgres(t)
	for _, tx := range []bool{false, true} {
		t.Run(fmt.Sprintf("tx=%v", tx), func(t *testing.T) {
			restartRun(t, pg, tx)
		})
	}
}

func restartRun(t *testing.T, pg *testserver.Postgres, tx bool) {
	ctx := context.Background()
	admin, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	shared := newStoreOn(t, admin, steadfast.Postgres)
	biz := businessTable(t, shared)

	o := durabletest.Outage{
		Store: func(t *testing.T, _ int) idempotency.Store {
			db, err := sql.Open("pgx", pg.URL())
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(4)
			t.Cleanup(func() { db.Close() })
			s, err := sqlstore.New(db, steadfast.Postgres, sqlstore.WithTable(shared.Table()))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Down: pg.Stop,
		Up:   pg.Start,
	}
	if tx {
		o.Options = []idempotency.Option{idempotency.WithTransaction()}
		o.Effect = func(r *http.Request, n int) error {
			_, err := mustTx(r.Context()).ExecContext(r.Context(), "INSERT INTO "+biz+" (id, n) VALUES ($1, $2)", fmt.Sprint(n), n)
			return err
		}
		o.CheckEffects = func(t *testing.T, events int) {
			// A pool of its own: admin's connections died with the server.
			check, err := sql.Open("pgx", pg.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer check.Close()
			rows, err := check.QueryContext(ctx, "SELECT id, COUNT(*) FROM "+biz+" GROUP BY id HAVING COUNT(*) <> 1")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var id string
				var n int
				_ = rows.Scan(&id, &n)
				t.Errorf("transactional path: event %s committed %d times", id, n)
			}
			rows.Close()
			var total int
			if err := check.QueryRow("SELECT COUNT(*) FROM " + biz).Scan(&total); err != nil {
				t.Fatal(err)
			}
			if total != events {
				t.Fatalf("%d effects committed, want %d", total, events)
			}
		}
	}
	res := o.Run(t)
	note := "ran twice"
	if tx {
		note = "ran again after their first run's transaction was rolled back (each committed once)"
	}
	t.Logf("tx=%v: %d events, %d answered 503 during the outage, %d requests in flight at the outage, %d events' responses not stored, %d events' handlers %s",
		tx, res.Events, res.Unavailable, res.InFlight, res.Unstored, res.Doubles, note)
}
