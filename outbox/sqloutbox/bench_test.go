package sqloutbox_test

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// benchMessages is how many messages one drain moves (one op).
const benchMessages = 20000

func fill(b *testing.B, db *sql.DB, s *sqloutbox.Store, n, keys int) {
	b.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		batch := make([]outbox.Message, 0, 1000)
		for j := i; j < min(i+1000, n); j++ {
			m := outbox.Message{Topic: "bench", Payload: []byte(`{"order":` + strconv.Itoa(j) + `}`)}
			if keys > 0 {
				m.Key = "k" + strconv.Itoa(j%keys)
			}
			batch = append(batch, m)
		}
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Enqueue(ctx, tx, batch...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	// As autovacuum would soon: the claim's plan relies on statistics.
	if _, err := db.Exec("ANALYZE " + s.Table()); err != nil {
		b.Fatal(err)
	}
}

type countingPublisher struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (p *countingPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	if p.n.Add(1) == p.want {
		close(p.done)
	}
	return nil
}

// baselineDrain is the hand-written relay: 4 workers, each claiming 100
// rows with one FOR UPDATE SKIP LOCKED statement and marking them sent with
// one statement, per transaction.
func baselineDrain(b *testing.B, db *sql.DB, table string) {
	b.Helper()
	var wg sync.WaitGroup
	claim := `SELECT seq FROM ` + table + ` WHERE state = 0 AND available_at <= now() ORDER BY available_at LIMIT 100 FOR UPDATE SKIP LOCKED`
	mark := `UPDATE ` + table + ` SET state = 1, done_at = now() WHERE seq = ANY ($1)`
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tx, err := db.Begin()
				if err != nil {
					b.Error(err)
					return
				}
				rows, err := tx.Query(claim)
				if err != nil {
					b.Error(err)
					tx.Rollback()
					return
				}
				var seqs []int64
				for rows.Next() {
					var s int64
					rows.Scan(&s)
					seqs = append(seqs, s)
				}
				rows.Close()
				if len(seqs) == 0 {
					tx.Rollback()
					return
				}
				if _, err := tx.Exec(mark, seqs); err != nil {
					b.Error(err)
					tx.Rollback()
					return
				}
				if err := tx.Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// leaseDrain is the least any relay must do that publishes outside the
// claiming transaction: 4 workers, each claiming 100 rows under a lease with
// one statement (a first row version) and marking them sent with another (a
// second), each statement its own transaction. It shows what the lease
// costs against the baseline, which holds its row locks while "publishing".
func leaseDrain(b *testing.B, db *sql.DB, table string) {
	b.Helper()
	claim := `WITH c AS (SELECT seq FROM ` + table + ` WHERE state = 0 AND available_at <= now()
	ORDER BY available_at LIMIT 100 FOR UPDATE SKIP LOCKED)
UPDATE ` + table + ` o SET claim_token = $1, available_at = now() + interval '1 minute'
FROM c WHERE o.seq = c.seq RETURNING o.seq`
	mark := `UPDATE ` + table + ` SET state = 1, done_at = now(), claim_token = 0 WHERE seq = ANY ($1) AND claim_token = $2`
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tok := rand.Int64N(1<<62) + 1
				rows, err := db.Query(claim, tok)
				if err != nil {
					b.Error(err)
					return
				}
				var seqs []int64
				for rows.Next() {
					var s int64
					rows.Scan(&s)
					seqs = append(seqs, s)
				}
				rows.Close()
				if len(seqs) == 0 {
					return
				}
				if _, err := db.Exec(mark, seqs, tok); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func relayDrain(b *testing.B, s *sqloutbox.Store, n int) {
	b.Helper()
	p := &countingPublisher{want: int64(n), done: make(chan struct{})}
	r, err := outbox.NewRelay(s, p)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	<-p.done
	if err := r.Stop(context.Background()); err != nil { // writes the last outcomes back
		b.Fatal(err)
	}
}

// BenchmarkRelayThroughput moves benchMessages messages per op through a
// no-op publisher: the hand-written baseline, a hand-written lease loop, the
// relay unordered, and the relay with 1,000 partition keys. Compare msgs/s.
func BenchmarkRelayThroughput(b *testing.B) {
	cases := []struct {
		name  string
		keys  int
		drain func(b *testing.B, db *sql.DB, s *sqloutbox.Store)
	}{
		{"baseline-4-workers", 0, func(b *testing.B, db *sql.DB, s *sqloutbox.Store) { baselineDrain(b, db, s.Table()) }},
		{"lease-loop-4-workers", 0, func(b *testing.B, db *sql.DB, s *sqloutbox.Store) { leaseDrain(b, db, s.Table()) }},
		{"relay-unordered", 0, func(b *testing.B, db *sql.DB, s *sqloutbox.Store) { relayDrain(b, s, benchMessages) }},
		{"relay-ordered-1000-keys", 1000, func(b *testing.B, db *sql.DB, s *sqloutbox.Store) { relayDrain(b, s, benchMessages) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var total time.Duration
			for range b.N {
				b.StopTimer()
				db, s, _ := newPostgres(b)
				fill(b, db, s, benchMessages, c.keys)
				b.StartTimer()
				start := time.Now()
				c.drain(b, db, s)
				total += time.Since(start)
				b.StopTimer()
				var left int64
				if err := db.QueryRow("SELECT count(*) FROM " + s.Table() + " WHERE state = 0").Scan(&left); err != nil || left != 0 {
					b.Fatalf("%d left, %v", left, err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*benchMessages)/total.Seconds(), "msgs/s")
		})
	}
}

type publisherFunc func(ctx context.Context, d outbox.Delivery) error

func (f publisherFunc) Publish(ctx context.Context, d outbox.Delivery) error { return f(ctx, d) }
