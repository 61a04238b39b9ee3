package sqloutbox_test

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
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

// BenchmarkEnqueue compares business transactions (an order row plus one
// outbox message) that write the message with Enqueue against the same
// transaction writing the same row with a raw INSERT (the baseline). The
// machine these run on is shared and noisy, so each op runs one of each,
// alternating which goes first, and reports both times and the overhead.
func BenchmarkEnqueue(b *testing.B) {
	db, s, _ := newPostgres(b)
	_, quiet, _ := newPostgres(b, sqloutbox.WithoutNotify())
	orders := "bench_orders_" + strconv.Itoa(int(time.Now().UnixNano()%1e9))
	if _, err := db.Exec("CREATE TABLE " + orders + " (id uuid PRIMARY KEY, customer text NOT NULL, total bigint NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Exec("DROP TABLE " + orders) })
	ctx := context.Background()
	payload := []byte(`{"order":"3f6c","customer":"c-42","total":1999}`)
	business := func(b *testing.B, write func(tx *sql.Tx) error) time.Duration {
		start := time.Now()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		id, _ := uuid.NewV7()
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+orders+" (id, customer, total) VALUES ($1, $2, $3)", id, "c-42", 1999); err != nil {
			b.Fatal(err)
		}
		if err := write(tx); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	raw := "INSERT INTO " + s.Table() + " (id, topic, partition_key, headers, payload, traceparent, available_at) VALUES ($1, $2, $3, $4, $5, $6, now())"
	rawWrite := func(key any) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			mid, _ := uuid.NewV7()
			_, err := tx.ExecContext(ctx, raw, mid, "orders", key, nil, payload, nil)
			return err
		}
	}
	cases := []struct {
		name  string
		key   string
		store *sqloutbox.Store
		batch int
	}{
		{"keyed", "c-42", s, 1},
		{"keyless", "", s, 1},
		{"keyed-without-notify", "c-42", quiet, 1},
		{"keyless-without-notify", "", quiet, 1},
		{"batch-of-100-keyed", "c-", s, 100},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			msgs := make([]outbox.Message, c.batch)
			for i := range msgs {
				msgs[i] = outbox.Message{Topic: "orders", Key: c.key, Payload: payload}
				if c.batch > 1 {
					msgs[i].Key += strconv.Itoa(i)
				}
			}
			var key any
			if c.key != "" {
				key = c.key
			}
			base := rawWrite(key)
			if c.batch > 1 {
				base = func(tx *sql.Tx) error { // 100 raw INSERTs, one round trip each
					for range c.batch {
						if err := rawWrite(key)(tx); err != nil {
							return err
						}
					}
					return nil
				}
			}
			enq := func(tx *sql.Tx) error { return c.store.Enqueue(ctx, tx, msgs...) }
			var tb, te time.Duration
			for i := range b.N {
				if i%2 == 0 {
					tb += business(b, base)
					te += business(b, enq)
				} else {
					te += business(b, enq)
					tb += business(b, base)
				}
			}
			b.ReportMetric(float64(tb.Microseconds())/float64(b.N)/1000, "raw-ms/tx")
			b.ReportMetric(float64(te.Microseconds())/float64(b.N)/1000, "enqueue-ms/tx")
			b.ReportMetric(100*(float64(te)/float64(tb)-1), "overhead-%")
		})
	}
}

// BenchmarkCommitToPublish measures the time from a commit returning to the
// publish starting, one message at a time, woken by LISTEN/NOTIFY, and in
// poll-only mode (100 ms) for comparison. Reports p50 and p99.
func BenchmarkCommitToPublish(b *testing.B) {
	for _, mode := range []string{"listen-notify", "poll-100ms"} {
		b.Run(mode, func(b *testing.B) {
			db, s, _ := newPostgres(b)
			published := make(chan time.Time, 1)
			pub := outbox.Publisher(publisherFunc(func(ctx context.Context, d outbox.Delivery) error {
				published <- time.Now()
				return nil
			}))
			opts := []outbox.Option{outbox.WithPollInterval(100 * time.Millisecond)}
			if mode == "listen-notify" {
				l, err := pgxoutbox.NewListener(s, db)
				if err != nil {
					b.Fatal(err)
				}
				opts = []outbox.Option{outbox.WithNotifier(l)} // default poll: 1 s
			}
			r, err := outbox.NewRelay(s, pub, opts...)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer r.Stop(context.Background())
			time.Sleep(200 * time.Millisecond) // the listener is up
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Payload: []byte("x")}); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				committed := time.Now()
				lat = append(lat, max(0, (<-published).Sub(committed)))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

type publisherFunc func(ctx context.Context, d outbox.Delivery) error

func (f publisherFunc) Publish(ctx context.Context, d outbox.Delivery) error { return f(ctx, d) }
