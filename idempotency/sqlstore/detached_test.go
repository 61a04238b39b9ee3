package sqlstore_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// Issue 12 item 3: the answer of a handler that finished is committed even
// if the client left: the transaction is detached from the client's
// context, and bounded by WithMaxTxDuration instead. It used to be begun on
// the request's context, so that database/sql rolled it back when the
// client went away, and the handler's work was lost (503 to nobody, a rerun
// on the retry).
func TestCommitSurvivesClientGone(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		s := newStore(t, d, 4)
		biz := businessTable(t, s)
		db := sqlstore.DBOf(s)
		ins := insertSQL(d, biz)
		runs := 0
		var leave context.CancelFunc
		h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
			runs++
			if _, err := tx.ExecContext(r.Context(), ins, "kept", runs); err != nil {
				t.Errorf("insert: %v", err)
			}
			// The client goes away as the handler finishes; database/sql
			// would roll a transaction of the request's context back.
			leave()
			time.Sleep(50 * time.Millisecond)
			w.WriteHeader(http.StatusCreated)
		})
		ctx, cancel := context.WithCancel(context.Background())
		leave = cancel
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader("x")).WithContext(ctx)
		r.Header.Set("Idempotency-Key", "gone")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusCreated {
			t.Fatalf("answer to the client that left: %d %s; want 201 (committed)", w.Code, w.Body)
		}
		if n := countRows(t, db, biz, "kept"); n != 1 {
			t.Fatalf("%d rows of the finished handler; want 1 committed", n)
		}
		leave = func() {}
		if w := post(h, "gone", "x"); w.Header().Get(idempotency.ReplayedHeader) != "true" || runs != 1 {
			t.Fatalf("retry: %d, replayed %q, %d runs; want the replay", w.Code, w.Header().Get(idempotency.ReplayedHeader), runs)
		}
	})
}

// Issue 12 item 3: WithMaxTxDuration bounds the transaction: a handler
// that outlasts it has its writes rolled back, the client gets 503 and the
// retry runs again.
func TestMaxTxDuration(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		s := newStore(t, d, 4)
		biz := businessTable(t, s)
		ins := insertSQL(d, biz)
		runs := 0
		h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
			runs++
			if _, err := tx.ExecContext(r.Context(), ins, "slow", runs); err != nil {
				if runs == 1 || r.Context().Err() == nil {
					t.Errorf("insert: %v", err)
				}
				return // a retry that outlasted the bound on a loaded machine
			}
			if runs == 1 {
				time.Sleep(400 * time.Millisecond)
			}
			w.WriteHeader(http.StatusCreated)
		}, idempotency.WithMaxTxDuration(200*time.Millisecond))
		if w := post(h, "slow", "x"); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("a handler that outlasted WithMaxTxDuration: %d; want 503", w.Code)
		}
		// The retry runs under the same 200 ms bound: on a loaded machine
		// its own transaction may outlast it too, and is answered 503 and
		// rolled back in the same way (only a run that committed leaves a
		// row). It is retried until it fits.
		w := post(h, "slow", "x")
		for i := 0; i < 10 && w.Code == http.StatusServiceUnavailable; i++ {
			w = post(h, "slow", "x")
		}
		if w.Code != http.StatusCreated || runs < 2 {
			t.Fatalf("retry: %d, %d runs; want the handler run again", w.Code, runs)
		}
		if n := countRows(t, sqlstore.DBOf(s), biz, "slow"); n != 1 {
			t.Fatalf("%d rows; want only the retry's", n)
		}
	})
}
