package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// keyedTable creates a business table whose id is a primary key, with the
// row "dup" in it, so that inserting "dup" again is a unique violation.
func keyedTable(t *testing.T, s *sqlstore.Store) string {
	t.Helper()
	db := sqlstore.DBOf(s)
	name := uniqueTable(t)
	if _, err := db.Exec("CREATE TABLE " + name + " (id VARCHAR(64) NOT NULL PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + name) })
	if _, err := db.Exec("INSERT INTO " + name + " (id, n) VALUES ('dup', 0)"); err != nil {
		t.Fatal(err)
	}
	return name
}

// Issue 12 item 1: the savepoint rule of transactional mode, on every
// database alike (see idempotency.TxFrom).
func TestSavepointRule(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		s := newStore(t, d, 4)
		biz := keyedTable(t, s)
		db := sqlstore.DBOf(s)
		ins := insertSQL(d, biz)

		t.Run("a failed statement, then a final refusal", func(t *testing.T) {
			// The handler's own insert fails (a unique violation, which
			// aborts a PostgreSQL transaction); it catches it and answers
			// 422. The 422 is stored and replayed, and its other write is
			// rolled back. It used to be 503 on PostgreSQL, on every retry.
			runs := 0
			h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
				runs++
				if _, err := tx.ExecContext(r.Context(), ins, "half-done-1", 1); err != nil {
					t.Errorf("first insert: %v", err)
				}
				if _, err := tx.ExecContext(r.Context(), ins, "dup", 1); err == nil {
					t.Errorf("the duplicate insert succeeded")
				}
				w.WriteHeader(http.StatusUnprocessableEntity)
				fmt.Fprint(w, "already exists")
			})
			first := post(h, "refused-1", "x")
			if first.Code != http.StatusUnprocessableEntity || first.Body.String() != "already exists" {
				t.Fatalf("first answer %d %q; want the handler's 422", first.Code, first.Body)
			}
			again := post(h, "refused-1", "x")
			if again.Code != http.StatusUnprocessableEntity || again.Header().Get(idempotency.ReplayedHeader) != "true" || runs != 1 {
				t.Fatalf("retry %d, replayed %q, %d runs; want the 422 replayed", again.Code, again.Header().Get(idempotency.ReplayedHeader), runs)
			}
			if n := countRows(t, db, biz, "half-done-1"); n != 0 {
				t.Fatalf("%d rows of a refused request; want its writes rolled back to the savepoint", n)
			}
		})

		t.Run("a refusal leaves no half-done writes", func(t *testing.T) {
			h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
				if _, err := tx.ExecContext(r.Context(), ins, "half-done-2", 1); err != nil {
					t.Errorf("insert: %v", err)
				}
				w.WriteHeader(http.StatusBadRequest)
			})
			if w := post(h, "refused-2", "x"); w.Code != http.StatusBadRequest {
				t.Fatalf("answer %d; want 400", w.Code)
			}
			if n := countRows(t, db, biz, "half-done-2"); n != 0 {
				t.Fatalf("%d rows of a refused request; want 0", n)
			}
			if w := post(h, "refused-2", "x"); w.Header().Get(idempotency.ReplayedHeader) != "true" {
				t.Fatalf("retry %d; want the 400 replayed", w.Code)
			}
		})

		t.Run("a success is committed with its writes", func(t *testing.T) {
			h := txServer(t, s, insertRow(d, biz, http.StatusCreated))
			if w := post(h, "ok-1", "done-1"); w.Code != http.StatusCreated {
				t.Fatalf("answer %d %s; want 201", w.Code, w.Body)
			}
			if n := countRows(t, db, biz, "done-1"); n != 1 {
				t.Fatalf("%d rows of a success; want 1", n)
			}
		})

		t.Run("the transaction lost, then a success", func(t *testing.T) {
			// The handler's transaction is gone before the commit (here it
			// rolls it back itself, as a deadlock or an automatic rollback
			// would). Nothing is stored, the key is released, the answer is
			// 503, and the retry runs again.
			runs := 0
			h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
				runs++
				if _, err := tx.ExecContext(r.Context(), ins, fmt.Sprint("lost-", runs), runs); err != nil {
					t.Errorf("insert: %v", err)
				}
				if runs == 1 {
					if _, err := tx.ExecContext(r.Context(), "ROLLBACK"); err != nil {
						t.Errorf("ROLLBACK: %v", err)
					}
				}
				w.WriteHeader(http.StatusCreated)
			})
			if w := post(h, "lost", "x"); w.Code != http.StatusServiceUnavailable {
				t.Fatalf("answer over a lost transaction %d %s; want 503", w.Code, w.Body)
			}
			if w := post(h, "lost", "x"); w.Code != http.StatusCreated || runs != 2 {
				t.Fatalf("retry %d, %d runs; want the handler run again", w.Code, runs)
			}
			if countRows(t, db, biz, "lost-1") != 0 || countRows(t, db, biz, "lost-2") != 1 {
				t.Fatal("the lost run's write was kept, or the retry's not")
			}
		})

		t.Run("Do: a final error is stored, its writes rolled back", func(t *testing.T) {
			r, err := idempotency.NewRunner(s, idempotency.WithTransaction())
			if err != nil {
				t.Fatal(err)
			}
			runs := 0
			fn := func(ctx context.Context) (int, error) {
				runs++
				tx, err := idempotency.TxFrom(ctx)
				if err != nil {
					return 0, err
				}
				if _, err := tx.ExecContext(ctx, ins, "half-done-do", 1); err != nil {
					return 0, err
				}
				return 0, idempotency.Final(errors.New("card declined"))
			}
			for i := range 2 {
				_, err := idempotency.Do(context.Background(), r, "do-refused", fn)
				var fe *idempotency.FinalError
				if !errors.As(err, &fe) || fe.Error() != "card declined" {
					t.Fatalf("call %d: %v; want the final error", i, err)
				}
			}
			if runs != 1 || countRows(t, db, biz, "half-done-do") != 0 {
				t.Fatalf("%d runs, %d rows; want 1 run and its writes rolled back", runs, countRows(t, db, biz, "half-done-do"))
			}
		})

		if d == steadfast.Postgres {
			t.Run("the handler's statements wait for locks as usual", func(t *testing.T) {
				// The claim's bounded lock wait ends with the claim.
				var got string
				h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
					if err := tx.QueryRowContext(r.Context(), "SHOW lock_timeout").Scan(&got); err != nil {
						t.Error(err)
					}
					w.WriteHeader(http.StatusNoContent)
				})
				post(h, "lock-timeout", "x")
				if got != "0" {
					t.Fatalf("lock_timeout in the handler's transaction = %q; want the session's (0)", got)
				}
			})
			t.Run("a success over an aborted transaction", func(t *testing.T) {
				runs := 0
				h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
					runs++
					if runs == 1 {
						_, _ = tx.ExecContext(r.Context(), ins, "dup", 1) // aborts it
					}
					w.WriteHeader(http.StatusCreated)
				})
				if w := post(h, "aborted", "x"); w.Code != http.StatusServiceUnavailable {
					t.Fatalf("201 over an aborted transaction: %d; want 503", w.Code)
				}
				if w := post(h, "aborted", "x"); w.Code != http.StatusCreated || runs != 2 {
					t.Fatalf("retry %d, %d runs; want the handler run again", w.Code, runs)
				}
			})
		}
	})
}
