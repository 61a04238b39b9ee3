package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/internal/testserver"
)

// openViaProxy opens a pool on the test server of d through a TCP proxy the
// test controls.
func openViaProxy(t *testing.T, d steadfast.Dialect) (*sql.DB, *testserver.Proxy) {
	t.Helper()
	var (
		driver, dsn string
		p           *testserver.Proxy
	)
	switch d {
	case steadfast.Postgres:
		u, err := url.Parse(testenv.PostgresURL(t))
		if err != nil {
			t.Fatal(err)
		}
		p = testserver.NewProxy(t, u.Host)
		u.Host = p.Addr()
		driver, dsn = "pgx", u.String()
	case steadfast.MySQL:
		cfg, err := mysql.ParseDSN(testenv.MySQLURL(t))
		if err != nil {
			t.Fatal(err)
		}
		p = testserver.NewProxy(t, cfg.Addr)
		cfg.Addr = p.Addr()
		driver, dsn = "mysql", cfg.FormatDSN()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db, p
}

// TestServerFaults: a database that hangs (the caller's deadline passes) or
// drops every connection makes each operation fail with an error and marks
// nothing done; when the network comes back, the store works again by
// itself.
func TestServerFaults(t *testing.T) {
	for _, d := range []steadfast.Dialect{steadfast.Postgres, steadfast.MySQL} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			db, proxy := openViaProxy(t, d)
			s := newStoreOn(t, db, d)
			ctx := context.Background()
			for _, fault := range []struct {
				name  string
				apply func()
				want  error
			}{
				{"hang", proxy.Hang, context.DeadlineExceeded},
				{"cut", proxy.Cut, nil},
			} {
				held, err := s.Claim(ctx, "held-"+fault.name, "fp", time.Hour)
				if err != nil || !held.Acquired {
					t.Fatalf("claim = %+v, %v", held, err)
				}
				fault.apply()
				tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				c, err := s.Claim(tctx, "new-"+fault.name, "fp", time.Hour)
				if err == nil || c.Acquired {
					t.Errorf("%s: claim = %+v, %v; want an error", fault.name, c, err)
				}
				if fault.want != nil && !errors.Is(err, fault.want) {
					t.Errorf("%s: claim error %v, want %v", fault.name, err, fault.want)
				}
				if err := s.Complete(tctx, "held-"+fault.name, held.Token, []byte("r"), time.Hour); err == nil || errors.Is(err, idempotency.ErrLeaseLost) {
					t.Errorf("%s: complete = %v; want a connection error", fault.name, err)
				}
				cancel()
				proxy.Restore()
				// Recovers by itself: the next calls work.
				for i := 0; i < 50; i++ {
					if _, err = s.Get(ctx, "held-"+fault.name); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("%s: the store did not recover: %v", fault.name, err)
				}
				// A claim whose answer was lost may still have reached the
				// server (a hung connection delivers its bytes later): at
				// most an in-progress record, never a completed one.
				if r, err := s.Get(ctx, "new-"+fault.name); err == nil && r.Status != idempotency.StatusInProgress {
					t.Fatalf("%s: the failed claim left %+v", fault.name, r)
				} else if err != nil && !errors.Is(err, idempotency.ErrNotFound) {
					t.Fatal(err)
				}
				// Likewise the completion: it failed for the caller, and may
				// or may not have reached the server; either way the record
				// holds the claim or exactly that response.
				if r, err := s.Get(ctx, "held-"+fault.name); err != nil ||
					(r.Status != idempotency.StatusInProgress && string(r.Response) != "r") {
					t.Fatalf("%s: after a failed completion: %+v, %v", fault.name, r, err)
				}
			}
		})
	}
}

// TestGarbageRecord: a row the store did not write (an unknown status) gets
// a clear error from Get and Claim, and is never taken over.
func TestGarbageRecord(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 2)
		ins := rebind(d, "INSERT INTO "+s.Table()+" (idem_key, fingerprint, status, token, lease_until, expires_at) VALUES ($1, 'fp', 9, 1, 0, $2)")
		if _, err := sqlstore.DBOf(s).Exec(ins, "garbage", time.Now().Add(time.Hour).UnixNano()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "garbage"); err == nil || !strings.Contains(err.Error(), "unknown status") {
			t.Errorf("get = %v, want an unknown-status error", err)
		}
		if c, err := s.Claim(ctx, "garbage", "fp", time.Hour); err == nil || c.Acquired {
			t.Errorf("claim = %+v, %v; want an error", c, err)
		}
	})
}

// Issue 12 item 10: after the database restarted (here: every pooled
// connection cut), the first requests in transactional mode are served: a
// begin that fails on a broken connection (nothing ran yet) is tried again
// on a fresh one. They used to get 503 "begin: conn closed".
func TestBeginRetriedAfterRestart(t *testing.T) {
	for _, d := range []steadfast.Dialect{steadfast.Postgres, steadfast.MySQL} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			db, proxy := openViaProxy(t, d)
			s := newStoreOn(t, db, d)
			h := txServer(t, s, func(w http.ResponseWriter, r *http.Request, tx *sql.Tx) {
				w.WriteHeader(http.StatusCreated)
			})
			for round := range 3 {
				// Fill the pool with idle connections, then break them all.
				conns := make([]*sql.Conn, 4)
				for i := range conns {
					c, err := db.Conn(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if err := c.PingContext(context.Background()); err != nil {
						t.Fatal(err)
					}
					conns[i] = c
				}
				for _, c := range conns {
					c.Close()
				}
				proxy.Cut()
				proxy.Restore()
				for i := range 4 {
					if w := post(h, fmt.Sprintf("r%d-%d", round, i), "x"); w.Code != http.StatusCreated {
						t.Fatalf("round %d, request %d after the restart: %d %s; want 201", round, i, w.Code, w.Body)
					}
				}
			}
		})
	}
}
