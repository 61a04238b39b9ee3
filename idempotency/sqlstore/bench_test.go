package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

// The benchmarks compare each store operation with the minimal SQL for the
// job issued by hand with the same driver, in the same run: one INSERT ... ON
// CONFLICT DO NOTHING and one UPDATE (two commits) for a new key, one SELECT
// for a replay. On PostgreSQL and MySQL they run 16 concurrent callers on a
// pool of 16 connections.
//
// BenchmarkNewKey and BenchmarkReplay run each side alone
// (durabletest.Standalone: 11 rounds of 500ms per side, the order
// alternating) and report the store's throughput over the baseline's as a
// median with its range:
//
//	go test -run '^$' -bench 'NewKey|Replay' -benchtime 1x ./idempotency/sqlstore/
//
// BenchmarkTransactional and BenchmarkPgxNative are paired: the store and
// the baseline alternate from the same callers at the same time, which
// hides a bottleneck they share; each reports both mean latencies
// (base-ns/op, store-ns/op) and store/base, the latency ratio.

const benchCallers = 16

// benchConns is the pool size: 16 on servers, 4 on SQLite, whose single
// writer more connections only queue for (see BenchmarkSQLite).
func benchConns(d steadfast.Dialect) int {
	if d == steadfast.SQLite {
		return 4
	}
	return benchCallers
}

func keyGen() func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "bench-" + hex.EncodeToString(b[:]) + "-"
	var n atomic.Int64
	return func() string { return prefix + strconv.FormatInt(n.Add(1), 10) }
}

func parallel(b *testing.B, f func(ctx context.Context) error) {
	b.Helper()
	b.ReportAllocs()
	p := benchCallers / testingProcs()
	if p < 1 {
		p = 1
	}
	b.SetParallelism(p)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := f(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func testingProcs() int {
	n := 0
	for range benchProcs() {
		n++
	}
	return n
}

// rebind turns $n placeholders into ? for SQLite and MySQL.
func rebind(d steadfast.Dialect, q string) string {
	if d == steadfast.Postgres {
		return q
	}
	out := make([]byte, 0, len(q))
	for i := 0; i < len(q); i++ {
		if q[i] == '$' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' {
			out = append(out, '?')
			for i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9' {
				i++
			}
			continue
		}
		out = append(out, q[i])
	}
	return string(out)
}

func baselineInsert(d steadfast.Dialect, table string) string {
	switch d {
	case steadfast.MySQL:
		return "INSERT IGNORE INTO " + table + " (idem_key, fingerprint, status, token, lease_until, expires_at) VALUES (?, ?, 1, ?, ?, ?)"
	default:
		return rebind(d, "INSERT INTO "+table+" (idem_key, fingerprint, status, token, lease_until, expires_at) VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT DO NOTHING")
	}
}

// BenchmarkNewKey: a new key's whole life, claimed then completed, against
// INSERT ... ON CONFLICT DO NOTHING and one UPDATE, each its own commit, in
// a table that holds benchRows completed records to begin with.
// Each side runs alone (durabletest.Standalone), rounds alternating; on
// PostgreSQL the ratio is also read from CPU time, this process's and its
// backends' (store/sql-by-cpu), and on SQLite from this process's alone.
func BenchmarkNewKey(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			e := newBenchEnv(b, d)
			e.seed(b, benchRows, "seed-")
			ins := baselineInsert(d, e.s.Table())
			upd := rebind(d, "UPDATE "+e.s.Table()+" SET status = 2, response = $1, expires_at = $2 WHERE idem_key = $3 AND token = $4")
			resp := []byte(`{"id":"ord_123","status":"created"}`)
			next := keyGen()
			e.standalone().Run(b,
				durabletest.Side{Name: "sql", Op: func(ctx context.Context) error {
					k := next()
					now := time.Now().UnixMicro()
					if _, err := e.db.ExecContext(ctx, ins, k, "fp", 7, now+int64(time.Minute/time.Microsecond), now+int64(time.Hour/time.Microsecond)); err != nil {
						return err
					}
					_, err := e.db.ExecContext(ctx, upd, resp, now+int64(24*time.Hour/time.Microsecond), k, 7)
					return err
				}},
				durabletest.Side{Name: "store", Op: durabletest.NewKey(e.s, next, resp)},
			)
		})
	}
}

// BenchmarkReplay: a completed key read back, against one SELECT of its
// row: the store's Claim (what a duplicate request does) and Get, over
// benchRows completed records.
func BenchmarkReplay(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			e := newBenchEnv(b, d)
			const keys = benchRows
			e.seed(b, keys, "replay-")
			sel := rebind(d, "SELECT fingerprint, status, token, lease_until, expires_at, response FROM "+e.s.Table()+" WHERE idem_key = $1")
			var n atomic.Int64
			key := func() string { return "replay-" + strconv.Itoa(int(n.Add(1)%keys)) }
			e.standalone().Run(b,
				durabletest.Side{Name: "select", Op: func(ctx context.Context) error {
					var (
						fp        string
						st        int
						tok, l, x int64
						r         []byte
					)
					return e.db.QueryRowContext(ctx, sel, key()).Scan(&fp, &st, &tok, &l, &x, &r)
				}},
				durabletest.Side{Name: "claim", Op: func(ctx context.Context) error {
					c, err := e.s.Claim(ctx, key(), "fp", time.Minute)
					if err == nil && (c.Acquired || c.Record.Status != idempotency.StatusCompleted) {
						err = fmt.Errorf("replay claim = %+v", c)
					}
					return err
				}},
				durabletest.Side{Name: "get", Op: func(ctx context.Context) error {
					_, err := e.s.Get(ctx, key())
					return err
				}},
			)
		})
	}
}

// benchEnv is a benchmark's store on a pool of its own, with a way to read
// the CPU time the server spends on that pool where it can be read.
type benchEnv struct {
	d      steadfast.Dialect
	db     *sql.DB
	s      *sqlstore.Store
	server func() (time.Duration, error)
}

// newBenchEnv opens a pool of benchConns(d) connections and a store on
// tables of its own. On PostgreSQL the pool's connections carry an
// application_name of their own, so that server reads the CPU time of
// their backends (/proc/<pid>/schedstat; the server must run on this
// machine, as the test servers do).
func newBenchEnv(b *testing.B, d steadfast.Dialect) benchEnv {
	b.Helper()
	e := benchEnv{d: d}
	if d == steadfast.Postgres {
		u, err := url.Parse(testenv.PostgresURL(b))
		if err != nil {
			b.Fatal(err)
		}
		var r [4]byte
		_, _ = rand.Read(r[:])
		app := "steadfast_bench_" + hex.EncodeToString(r[:])
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		if e.db, err = sql.Open("pgx", u.String()); err != nil {
			b.Fatal(err)
		}
		e.db.SetMaxOpenConns(benchConns(d))
		e.db.SetMaxIdleConns(benchConns(d))
		b.Cleanup(func() { e.db.Close() })
		e.server = func() (time.Duration, error) { return backendCPU(e.db, app) }
		if _, err := e.server(); err != nil {
			b.Logf("the backends' CPU time cannot be read: %v", err)
			e.server = nil
		}
	} else {
		e.db = openDB(b, d, benchConns(d))
	}
	e.s = newStoreOn(b, e.db, d)
	return e
}

// benchRows is the number of completed records in a benchmark's table
// before it starts, so that every statement finds its row as it would in
// use (by index, with fresh statistics).
const benchRows = 10000

// seed stores n completed records under the keys prefix0 .. prefix<n-1>
// with 16 callers, then refreshes the table's statistics.
func (e benchEnv) seed(b *testing.B, n int, prefix string) {
	b.Helper()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchCallers)
	for range benchCallers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				k := prefix + strconv.FormatInt(i, 10)
				c, err := e.s.Claim(ctx, k, "fp", time.Minute)
				if err == nil {
					err = e.s.Complete(ctx, k, c.Token, []byte(`{"id":"ord_123","status":"created"}`), 24*time.Hour)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	analyze := map[steadfast.Dialect]string{steadfast.Postgres: "ANALYZE ", steadfast.MySQL: "ANALYZE TABLE ", steadfast.SQLite: "ANALYZE "}[e.d]
	if _, err := e.db.ExecContext(ctx, analyze+e.s.Table()); err != nil {
		b.Fatal(err)
	}
}

func (e benchEnv) standalone() durabletest.Standalone {
	return durabletest.Standalone{
		Callers:   benchCallers,
		Round:     500 * time.Millisecond,
		Rounds:    11,
		Server:    e.server,
		InProcess: e.d == steadfast.SQLite,
	}
}

// backendCPU sums the CPU time of the PostgreSQL backends whose
// application_name is app.
func backendCPU(db *sql.DB, app string) (time.Duration, error) {
	rows, err := db.Query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var total time.Duration
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return 0, err
		}
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			return 0, fmt.Errorf("/proc/%d/schedstat: %q", pid, raw)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		total += time.Duration(ns)
	}
	return total, rows.Err()
}

// BenchmarkTransactional: a request that writes one business row. The base
// is the two-commit protocol by hand (claim INSERT, business INSERT,
// complete UPDATE, each its own commit). store: Claim, business INSERT,
// Complete. store_tx: ClaimTx, business INSERT in the transaction, Commit
// (one commit).
func BenchmarkTransactional(b *testing.B) {
	for _, d := range []steadfast.Dialect{steadfast.Postgres, steadfast.MySQL, steadfast.SQLite} {
		b.Run(d.String(), func(b *testing.B) {
			s := newStore(b, d, benchConns(d))
			biz := businessTable(b, s)
			bizIns := insertSQL(d, biz)
			ins := baselineInsert(d, s.Table())
			upd := rebind(d, "UPDATE "+s.Table()+" SET status = 2, response = $1, expires_at = $2 WHERE idem_key = $3 AND token = $4")
			resp := []byte(`{"id":"ord_123","status":"created"}`)
			next := keyGen()
			twoCommits := func(ctx context.Context) error {
				k := next()
				now := time.Now().UnixNano()
				if _, err := sqlstore.DBOf(s).ExecContext(ctx, ins, k, "fp", 7, now+int64(time.Minute), now+int64(time.Hour)); err != nil {
					return err
				}
				if _, err := sqlstore.DBOf(s).ExecContext(ctx, bizIns, k[len(k)-8:], 1); err != nil {
					return err
				}
				_, err := sqlstore.DBOf(s).ExecContext(ctx, upd, resp, now+int64(24*time.Hour), k, 7)
				return err
			}
			b.Run("store", func(b *testing.B) {
				durabletest.Paired(b, benchCallers, twoCommits, func(ctx context.Context) error {
					k := next()
					c, err := s.Claim(ctx, k, "fp", time.Minute)
					if err != nil {
						return err
					}
					if _, err := sqlstore.DBOf(s).ExecContext(ctx, bizIns, k[len(k)-8:], 1); err != nil {
						return err
					}
					return s.Complete(ctx, k, c.Token, resp, 24*time.Hour)
				})
			})
			b.Run("store_tx", func(b *testing.B) {
				durabletest.Paired(b, benchCallers, twoCommits, func(ctx context.Context) error {
					k := next()
					tx, _, err := s.BeginTx(ctx, k, "fp", time.Minute)
					if err != nil {
						return err
					}
					if _, err := tx.SQL().ExecContext(ctx, bizIns, k[len(k)-8:], 1); err != nil {
						_ = tx.Rollback(ctx)
						return err
					}
					return tx.Commit(ctx, resp, 24*time.Hour, false)
				})
			})
		})
	}
}

// BenchmarkPgxNative measures what a native pgxpool path could gain on
// PostgreSQL: the same two baseline statements through database/sql (pgx's
// stdlib driver, reported as base) and through pgxpool directly (reported as
// store).
func BenchmarkPgxNative(b *testing.B) {
	s := newStore(b, steadfast.Postgres, benchCallers)
	pool, err := pgxpool.New(context.Background(), testenv.PostgresURL(b)+"&pool_max_conns=16")
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ins := baselineInsert(steadfast.Postgres, s.Table())
	upd := "UPDATE " + s.Table() + " SET status = 2, response = $1, expires_at = $2 WHERE idem_key = $3 AND token = $4"
	resp := []byte(`{"id":"ord_123","status":"created"}`)
	next := keyGen()
	// base: database/sql over pgx's stdlib driver; store: pgxpool.
	durabletest.Paired(b, benchCallers, func(ctx context.Context) error {
		k := next()
		now := time.Now().UnixNano()
		if _, err := sqlstore.DBOf(s).ExecContext(ctx, ins, k, "fp", 7, now+int64(time.Minute), now+int64(time.Hour)); err != nil {
			return err
		}
		_, err := sqlstore.DBOf(s).ExecContext(ctx, upd, resp, now+int64(24*time.Hour), k, 7)
		return err
	}, func(ctx context.Context) error {
		k := next()
		now := time.Now().UnixNano()
		if _, err := pool.Exec(ctx, ins, k, "fp", 7, now+int64(time.Minute), now+int64(time.Hour)); err != nil {
			return err
		}
		_, err := pool.Exec(ctx, upd, resp, now+int64(24*time.Hour), k, 7)
		return err
	})
}

// BenchmarkSQLite: claim+complete per second on a WAL file database, with
// SQLiteDSN's synchronous=FULL (every commit is fsynced) or
// synchronous=NORMAL (fsync at checkpoints only: an application crash loses
// nothing, a power loss may lose the last commits), and pools of 1, 4 and 16
// connections (SQLite has one writer: more connections only wait for it, and
// its busy handler sleeps while they do).
func BenchmarkSQLite(b *testing.B) {
	for _, tc := range []struct {
		sync  string
		conns int
	}{{"FULL", 1}, {"FULL", 4}, {"FULL", 16}, {"NORMAL", 1}, {"NORMAL", 4}} {
		b.Run(fmt.Sprintf("sync=%s/conns=%d", tc.sync, tc.conns), func(b *testing.B) {
			dsn := strings.Replace(steadfast.SQLiteDSN(b.TempDir()+"/bench.db"), "_synchronous=FULL", "_synchronous="+tc.sync, 1)
			db, err := sql.Open("sqlite", dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(tc.conns)
			var got int
			if err := db.QueryRow("PRAGMA synchronous").Scan(&got); err != nil || got != map[string]int{"FULL": 2, "NORMAL": 1}[tc.sync] {
				b.Fatalf("PRAGMA synchronous = %d, %v", got, err)
			}
			s := newStoreOn(b, db, steadfast.SQLite)
			resp := []byte(`{"id":"ord_123","status":"created"}`)
			next := keyGen()
			parallel(b, durabletest.NewKey(s, next, resp))
		})
	}
}
