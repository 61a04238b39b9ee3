package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

// The benchmarks compare each store operation with the minimal SQL for the
// job issued by hand with the same driver, in the same run: one INSERT ... ON
// CONFLICT DO NOTHING and one UPDATE (two commits) for a new key, one SELECT
// for a replay. On PostgreSQL and MySQL they run 16 concurrent callers
// (RunParallel with GOMAXPROCS*parallelism goroutines) on a pool of 16
// connections.
//
// Each comparison runs the store and the baseline alternately, from the same
// callers at the same time (paired), so that both see the same load on a
// shared machine: it reports each one's mean latency (base-ns/op,
// store-ns/op) and store/base, the latency ratio; with a fixed number of
// callers, base/store is the store's share of the baseline's throughput.
//
//	go test -run '^$' -bench . -benchtime 3s ./idempotency/sqlstore/

const benchCallers = 16

// benchConns is the pool size: 16 on servers, 4 on SQLite, whose single
// writer more connections only queue for (see BenchmarkSQLite).
func benchConns(d sqlstore.Dialect) int {
	if d == sqlstore.SQLite {
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
func rebind(d sqlstore.Dialect, q string) string {
	if d == sqlstore.Postgres {
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

func baselineInsert(d sqlstore.Dialect, table string) string {
	switch d {
	case sqlstore.MySQL:
		return "INSERT IGNORE INTO " + table + " (idem_key, fingerprint, status, token, lease_until, expires_at) VALUES (?, ?, 1, ?, ?, ?)"
	default:
		return rebind(d, "INSERT INTO "+table+" (idem_key, fingerprint, status, token, lease_until, expires_at) VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT DO NOTHING")
	}
}

func BenchmarkNewKey(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			s := newStore(b, d, benchConns(d))
			ins := baselineInsert(d, s.Table())
			upd := rebind(d, "UPDATE "+s.Table()+" SET status = 2, response = $1, expires_at = $2 WHERE idem_key = $3 AND token = $4")
			resp := []byte(`{"id":"ord_123","status":"created"}`)
			next := keyGen()
			durabletest.Paired(b, benchCallers, func(ctx context.Context) error {
				k := next()
				now := time.Now().UnixNano()
				if _, err := sqlstore.DBOf(s).ExecContext(ctx, ins, k, "fp", 7, now+int64(time.Minute), now+int64(time.Hour)); err != nil {
					return err
				}
				_, err := sqlstore.DBOf(s).ExecContext(ctx, upd, resp, now+int64(24*time.Hour), k, 7)
				return err
			}, durabletest.NewKey(s, next, resp))
		})
	}
}

func BenchmarkReplay(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			s := newStore(b, d, benchConns(d))
			ctx := context.Background()
			const keys = 256
			for i := 0; i < keys; i++ {
				k := "replay-" + strconv.Itoa(i)
				c, err := s.Claim(ctx, k, "fp", time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Complete(ctx, k, c.Token, []byte(`{"id":"ord_123","status":"created"}`), 24*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			sel := rebind(d, "SELECT fingerprint, status, token, lease_until, expires_at, response FROM "+s.Table()+" WHERE idem_key = $1")
			var n atomic.Int64
			key := func() string { return "replay-" + strconv.Itoa(int(n.Add(1)%keys)) }
			selectOne := func(ctx context.Context) error {
				var (
					fp        string
					st        int
					tok, l, e int64
					r         []byte
				)
				return sqlstore.DBOf(s).QueryRowContext(ctx, sel, key()).Scan(&fp, &st, &tok, &l, &e, &r)
			}
			b.Run("claim", func(b *testing.B) {
				durabletest.Paired(b, benchCallers, selectOne, func(ctx context.Context) error {
					c, err := s.Claim(ctx, key(), "fp", time.Minute)
					if err == nil && c.Acquired {
						err = errors.New("replay acquired")
					}
					return err
				})
			})
			b.Run("get", func(b *testing.B) {
				durabletest.Paired(b, benchCallers, selectOne, func(ctx context.Context) error {
					_, err := s.Get(ctx, key())
					return err
				})
			})
		})
	}
}

// BenchmarkTransactional: a request that writes one business row. The base
// is the two-commit protocol by hand (claim INSERT, business INSERT,
// complete UPDATE, each its own commit). store: Claim, business INSERT,
// Complete. store_tx: ClaimTx, business INSERT in the transaction, Commit
// (one commit).
func BenchmarkTransactional(b *testing.B) {
	for _, d := range []sqlstore.Dialect{sqlstore.Postgres, sqlstore.MySQL, sqlstore.SQLite} {
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
	s := newStore(b, sqlstore.Postgres, benchCallers)
	pool, err := pgxpool.New(context.Background(), testenv.PostgresURL(b)+"&pool_max_conns=16")
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ins := baselineInsert(sqlstore.Postgres, s.Table())
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
			dsn := strings.Replace(sqlstore.SQLiteDSN(b.TempDir()+"/bench.db"), "_synchronous=FULL", "_synchronous="+tc.sync, 1)
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
			s := newStoreOn(b, db, sqlstore.SQLite)
			resp := []byte(`{"id":"ord_123","status":"created"}`)
			next := keyGen()
			parallel(b, durabletest.NewKey(s, next, resp))
		})
	}
}
