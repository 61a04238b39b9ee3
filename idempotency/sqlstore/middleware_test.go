package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// The middleware in transactional mode over a real store (issue 12).

// txHandler is a handler that writes in the request's transaction.
type txHandler func(w http.ResponseWriter, r *http.Request, tx *sql.Tx)

// txServer wraps h in the middleware over s in transactional mode. A
// handler that finds no transaction answers 500 with TxFrom's error.
func txServer(t *testing.T, s *sqlstore.Store, h txHandler, opts ...idempotency.Option) http.Handler {
	t.Helper()
	mw, err := idempotency.Middleware(s, append([]idempotency.Option{idempotency.WithTransaction()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := idempotency.TxFrom(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h(w, r, tx)
	}))
}

// post sends a POST with key (none when empty) and body to h.
func post(h http.Handler, key, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// insertRow inserts (id, n) in tx and answers status, or 500 if the insert
// failed.
func insertRow(d steadfast.Dialect, table string, status int) txHandler {
	return func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
		body, _ := io.ReadAll(r.Body)
		if _, err := tx.ExecContext(r.Context(), insertSQL(d, table), string(body), 1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(status)
		fmt.Fprint(w, "done ", string(body))
	}
}

// Issue 12 item 4: with WithOptionalKey, a request without a key still runs
// in a transaction (none is claimed), committed with a final answer and
// rolled back otherwise; it never finds TxFrom empty.
func TestKeylessRequestGetsTransaction(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		s := newStore(t, d, 4)
		biz := businessTable(t, s)
		db := sqlstore.DBOf(s)
		created := txServer(t, s, insertRow(d, biz, http.StatusCreated), idempotency.WithOptionalKey())
		if w := post(created, "", "keyless-1"); w.Code != http.StatusCreated {
			t.Fatalf("keyless request: %d %s; want 201 from a handler that had a transaction", w.Code, w.Body)
		}
		if n := countRows(t, db, biz, "keyless-1"); n != 1 {
			t.Fatalf("%d rows of the keyless request; want 1 committed", n)
		}
		// Again: no key, no replay; it runs again.
		if w := post(created, "", "keyless-2"); w.Code != http.StatusCreated || countRows(t, db, biz, "keyless-2") != 1 {
			t.Fatalf("second keyless request: %d %s", w.Code, w.Body)
		}
		failed := txServer(t, s, insertRow(d, biz, http.StatusServiceUnavailable), idempotency.WithOptionalKey())
		if w := post(failed, "", "keyless-3"); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("keyless request answered 503: got %d", w.Code)
		}
		if n := countRows(t, db, biz, "keyless-3"); n != 0 {
			t.Fatalf("%d rows of a keyless request answered 503; want its transaction rolled back", n)
		}
	})
}

// Issue 12 item 4: a handler that asks for the transaction where there is
// none gets an error that names WithTransaction, not a nil *sql.Tx.
func TestTxFromWithoutTransactionMode(t *testing.T) {
	t.Parallel()
	s := newStore(t, steadfast.SQLite, 2)
	mw, err := idempotency.Middleware(s)
	if err != nil {
		t.Fatal(err)
	}
	var got error
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := idempotency.TxFrom(r.Context())
		if tx != nil {
			t.Errorf("TxFrom outside transactional mode returned a transaction")
		}
		got = err
		w.WriteHeader(http.StatusNoContent)
	}))
	post(h, "k", "x")
	if !errors.Is(got, idempotency.ErrNoTx) || !strings.Contains(got.Error(), "WithTransaction") {
		t.Fatalf("TxFrom outside transactional mode: %v; want ErrNoTx naming WithTransaction", got)
	}
	if _, err := idempotency.Middleware(s, idempotency.WithTransaction(), idempotency.WithFailOpen()); err == nil || !strings.Contains(err.Error(), "WithFailOpen") {
		t.Fatalf("WithTransaction with WithFailOpen: %v; want refused, naming WithFailOpen", err)
	}
	_ = context.Background
}

// Issue 12 item 6: with the middleware around a whole mux the route is the
// raw path; a long but valid URL is the client's right, and its scoped key
// fits the SQL store (it used to exceed 1,024 bytes: 503).
func TestLongURLFitsSQLStore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		s := newStore(t, d, 4)
		runs := 0
		mw, err := idempotency.Middleware(s)
		if err != nil {
			t.Fatal(err)
		}
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs++
			w.WriteHeader(http.StatusCreated)
		}))
		long := "/files/" + strings.Repeat("a", 3000)
		for i := range 2 {
			r := httptest.NewRequest(http.MethodPost, long, strings.NewReader("x"))
			r.Header.Set("Idempotency-Key", "k")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusCreated {
				t.Fatalf("request %d with a %d-byte path: %d %s; want 201", i, len(long), w.Code, w.Body)
			}
		}
		if runs != 1 {
			t.Fatalf("handler ran %d times; want 1 and a replay", runs)
		}
	})
}

// Issue 12 item 6: a response the store refuses as too large
// (WithMaxResponseSize below the middleware's own bound) is answered, and a
// marker is stored instead, so that a retry gets 422 rather than a rerun
// (it used to stay claimed, then run again); in transactional mode the
// handler's writes still commit, once.
func TestResponseTooLargeForStore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		for _, txMode := range []bool{false, true} {
			s := newStore(t, d, 4, sqlstore.WithMaxResponseSize(1024))
			biz := businessTable(t, s)
			runs := 0
			var opts []idempotency.Option
			if txMode {
				opts = append(opts, idempotency.WithTransaction())
			}
			mw, err := idempotency.Middleware(s, opts...)
			if err != nil {
				t.Fatal(err)
			}
			big := strings.Repeat("r", 4096)
			h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs++
				if txMode {
					tx, err := idempotency.TxFrom(r.Context())
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := tx.ExecContext(r.Context(), insertSQL(d, biz), "big", runs); err != nil {
						t.Error(err)
						return
					}
				}
				w.WriteHeader(http.StatusCreated)
				fmt.Fprint(w, big)
			}))
			first := post(h, "k", "x")
			if first.Code != http.StatusCreated || first.Body.String() != big {
				t.Fatalf("tx %v: first answer %d, %d bytes; want 201 with the whole body", txMode, first.Code, first.Body.Len())
			}
			retry := post(h, "k", "x")
			if retry.Code != http.StatusUnprocessableEntity || !strings.Contains(retry.Body.String(), "idempotency-response-not-stored") {
				t.Fatalf("tx %v: retry %d %s; want 422 response-not-stored", txMode, retry.Code, retry.Body)
			}
			if runs != 1 {
				t.Fatalf("tx %v: handler ran %d times; want 1", txMode, runs)
			}
			if txMode {
				if n := countRows(t, sqlstore.DBOf(s), biz, "big"); n != 1 {
					t.Fatalf("%d business rows; want 1 committed", n)
				}
			}
		}
	})
}

// Issue 12 item 8 on the SQL store: a result over WithMaxResponseSize is
// not retried and not run again; later calls get ErrNotStored, in both
// modes.
func TestDoResultTooLargeForStore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		for _, txMode := range []bool{false, true} {
			s := newStore(t, d, 4, sqlstore.WithMaxResponseSize(1024))
			var opts []idempotency.Option
			if txMode {
				opts = append(opts, idempotency.WithTransaction())
			}
			r, err := idempotency.NewRunner(s, opts...)
			if err != nil {
				t.Fatal(err)
			}
			runs := 0
			big := strings.Repeat("r", 4096)
			fn := func(context.Context) (string, error) { runs++; return big, nil }
			ctx := context.Background()
			got, err := idempotency.Do(ctx, r, "k", fn)
			if got != big || !errors.Is(err, idempotency.ErrNotStored) {
				t.Fatalf("tx %v: the run = %d bytes, %v; want the result and ErrNotStored", txMode, len(got), err)
			}
			got, err = idempotency.Do(ctx, r, "k", fn)
			if runs != 1 || got != "" || !errors.Is(err, idempotency.ErrNotStored) {
				t.Fatalf("tx %v: a later call = %d bytes, %v, %d runs; want ErrNotStored and no rerun", txMode, len(got), err, runs)
			}
		}
	})
}

// postCtx is post with a deadline, so that a request that queues fails
// instead of hanging the test.
func postCtx(h http.Handler, key string, within time.Duration) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("x")).WithContext(ctx)
	r.Header.Set("Idempotency-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// Issue 12 item 2: a duplicate that arrives while the first request runs in
// transactional mode does not queue on the claim's row lock (holding a
// pooled connection and a transaction for as long as the handler runs): it
// gets 409 at once, or with WithWait, a bounded wait and the replay; and
// another key is served meanwhile. Two replicas (two stores, each with a
// pool of 4 connections) share the tables; the handler blocks until the
// test releases it; 8 duplicates arrive, half on each replica. They used to
// queue, exhaust the pool and starve the other key.
func TestDuplicatesNeverQueueOnRowLock(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		dbA := openDB(t, d, 4)
		a := newStoreOn(t, dbA, d)
		replicas := []*sqlstore.Store{a}
		if d != steadfast.SQLite {
			// SQLite is one file: its transactions hold the one write lock,
			// so a second replica would queue for it (documented); the
			// duplicates there are this replica's.
			b, err := sqlstore.New(openDBLike(t, d, a, 4), d, sqlstore.WithTable(a.Table()))
			if err != nil {
				t.Fatal(err)
			}
			replicas = append(replicas, b)
		}
		for _, wait := range []time.Duration{0, 10 * time.Second} {
			slow := fmt.Sprintf("slow-%v", wait)
			entered, release := make(chan struct{}), make(chan struct{})
			handler := func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
				if r.Header.Get("Idempotency-Key") == slow {
					close(entered)
					<-release
				}
				w.WriteHeader(http.StatusCreated)
			}
			servers := make([]http.Handler, len(replicas))
			for i, s := range replicas {
				servers[i] = txServer(t, s, handler, idempotency.WithWait(wait))
			}
			first := make(chan *httptest.ResponseRecorder, 1)
			go func() { first <- postCtx(servers[0], slow, 30*time.Second) }()
			<-entered

			dups := make(chan *httptest.ResponseRecorder, 8)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() { dups <- postCtx(servers[i%len(servers)], slow, 15*time.Second) })
			}
			if wait == 0 {
				wg.Wait()
				close(dups)
				for w := range dups {
					if w.Code != http.StatusConflict || w.Header().Get("Retry-After") == "" {
						t.Fatalf("wait %v: a duplicate while the first runs: %d %s; want 409 with Retry-After", wait, w.Code, w.Body)
					}
				}
			}
			if d != steadfast.SQLite {
				if w := postCtx(servers[0], fmt.Sprintf("other-%v", wait), 5*time.Second); w.Code != http.StatusCreated {
					t.Fatalf("wait %v: another key while the first handler is blocked: %d %s; want 201", wait, w.Code, w.Body)
				}
			}
			close(release)
			if w := <-first; w.Code != http.StatusCreated {
				t.Fatalf("wait %v: the first request: %d %s", wait, w.Code, w.Body)
			}
			if wait > 0 {
				wg.Wait()
				close(dups)
				for w := range dups {
					if w.Code != http.StatusCreated || w.Header().Get(idempotency.ReplayedHeader) != "true" {
						t.Fatalf("wait %v: a waiting duplicate: %d %s; want the replay", wait, w.Code, w.Body)
					}
				}
			}
		}
	})
}
