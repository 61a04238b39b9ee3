package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
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
	events := 300
	if testing.Short() {
		events = 80
	}
	admin, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	shared := newStoreOn(t, admin, sqlstore.Postgres)
	biz := businessTable(t, shared)

	var (
		runs     = make([]atomic.Int32, events+20)
		inflight sync.Map // request -> event, while the middleware handles it
		down     atomic.Bool
		atDown   sync.Map // events whose handler was running when the server went down, or ran during the outage
	)
	var replicas []http.Handler
	for r := 0; r < 4; r++ {
		db, err := sql.Open("pgx", pg.URL())
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(4)
		t.Cleanup(func() { db.Close() })
		s, err := sqlstore.New(db, sqlstore.Postgres, sqlstore.WithTable(shared.Table()))
		if err != nil {
			t.Fatal(err)
		}
		opts := []idempotency.Option{
			idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")),
			idempotency.WithLease(2 * time.Second),
			idempotency.WithStoreTimeout(time.Second),
			idempotency.WithLogger(slog.New(slog.DiscardHandler)),
		}
		if tx {
			opts = append(opts, idempotency.WithTransaction())
		}
		mw, err := idempotency.Middleware(s, opts...)
		if err != nil {
			t.Fatal(err)
		}
		// A request is in flight from its claim to its completion, both
		// inside the middleware: mark it around the whole middleware.
		replicas = append(replicas, inFlight(&inflight, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var n int
			fmt.Sscan(strings.TrimPrefix(r.Header.Get("webhook-id"), "evt_"), &n)
			if down.Load() {
				atDown.Store(n, true)
			}
			runs[n].Add(1)
			if tx {
				if _, err := sqlstore.TxFrom(r.Context()).ExecContext(r.Context(), "INSERT INTO "+biz+" (id, n) VALUES ($1, $2)", fmt.Sprint(n), n); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			time.Sleep(time.Millisecond) // keep some handlers in flight
			fmt.Fprintf(w, "handled %d", n)
		}))))
	}
	post := func(event, replica int) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(fmt.Sprintf(`{"event":%d}`, event)))
		req.Header.Set("webhook-id", fmt.Sprintf("evt_%d", event))
		rec := httptest.NewRecorder()
		replicas[replica%len(replicas)].ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	var unavailable atomic.Int64
	deliver := func(event, replica int) error {
		deadline := time.Now().Add(2 * time.Minute)
		for attempt := 0; ; attempt++ {
			code, body := post(event, replica+attempt)
			switch {
			case code == http.StatusOK && body == fmt.Sprintf("handled %d", event):
				return nil
			case code == http.StatusServiceUnavailable || code == http.StatusConflict || code == http.StatusInternalServerError:
				if code == http.StatusServiceUnavailable {
					unavailable.Add(1)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("event %d: still %d: %s", event, code, body)
				}
				time.Sleep(5 * time.Millisecond)
			default:
				return fmt.Errorf("event %d: %d %s", event, code, body)
			}
		}
	}

	var done atomic.Int32
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
				errs <- deliver(e, first+2)
				done.Add(1)
			}
		}()
	}
	go func() {
		for e := 0; e < events; e++ {
			work <- e
		}
		close(work)
	}()

	// Wait until a third of the events are through, then stop the server.
	for done.Load() < int32(events/3) {
		time.Sleep(5 * time.Millisecond)
	}
	down.Store(true)
	inflight.Range(func(_, e any) bool { atDown.Store(e, true); return true })
	pg.Stop(t)
	// Events sent for the first time during the outage: 503, no handler.
	for e := events; e < events+20; e++ {
		code, body := post(e, e)
		if code != http.StatusServiceUnavailable {
			t.Errorf("event %d during the outage: %d %s, want 503", e, code, body)
		}
		if runs[e].Load() != 0 {
			t.Errorf("event %d ran during the outage", e)
		}
	}
	time.Sleep(300 * time.Millisecond)
	pg.Start(t)
	down.Store(false)

	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The outage events go through now.
	for e := events; e < events+20; e++ {
		if err := deliver(e, e); err != nil {
			t.Fatal(err)
		}
	}
	var doubles []int
	for e := range runs {
		switch n := runs[e].Load(); {
		case n == 0:
			t.Fatalf("event %d never ran", e)
		case n > 1:
			doubles = append(doubles, e)
		}
	}
	inFlightAtOutage := 0
	atDown.Range(func(any, any) bool { inFlightAtOutage++; return true })
	if tx {
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
		if total != events+20 {
			t.Fatalf("%d effects committed, want %d", total, events+20)
		}
	} else {
		for _, e := range doubles {
			if _, ok := atDown.Load(e); !ok {
				t.Errorf("event %d ran %d times but was not in flight at the outage", e, runs[e].Load())
			}
		}
	}
	if unavailable.Load() == 0 {
		t.Error("no delivery saw 503 during the outage")
	}
	note := "ran twice"
	if tx {
		note = "ran again after their first run's transaction was rolled back (each committed once)"
	}
	t.Logf("tx=%v: %d events, %d answered 503 during the outage, %d requests in flight at the outage, %d events' handlers %s",
		tx, events+20, unavailable.Load(), inFlightAtOutage, len(doubles), note)
}

// inFlight records each request's event in m while next handles it.
func inFlight(m *sync.Map, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(strings.TrimPrefix(r.Header.Get("webhook-id"), "evt_"), &n)
		m.Store(r, n)
		defer m.Delete(r)
		next.ServeHTTP(w, r)
	})
}
