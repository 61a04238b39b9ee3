package sqloutbox_test

import (
	"context"
	"log/slog"
	"os"
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

// writers is the number of concurrent writers of the enqueue
// benchmarks.
const writers = 16

// BenchmarkEnqueueWriters (issue 14 item 2) measures business transactions
// on PostgreSQL, each an order row and one outbox message, written by 16
// concurrent writers, each side alone for a round of 2 s on a fresh table,
// rounds rotating (STYLE rule 14):
//
//   - raw: the outbox row written with a plain INSERT of the same columns
//     (the baseline);
//   - enqueue: Enqueue with its defaults (wake-ups on: a NOTIFY, debounced);
//   - enqueue-without-notify: Enqueue on a store built WithoutNotify.
//
// keyless and keyed (a key per writer: Enqueue takes the key's lock and
// parks behind a pending message of the key; the raw INSERT does neither)
// are separate sub-benchmarks. It reports, per side, the median over the
// rounds of transactions per second, this process's and the pool's server
// CPU per transaction and allocations per transaction; and each Enqueue
// side's throughput over raw per round, as a median with its range, by
// wall time and by CPU time (client plus server). Run it with -benchtime
// 1x (b.N multiplies the 5 rounds; STEADFAST_ROUNDS changes them).
func BenchmarkEnqueueWriters(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "keyless"
		if keyed {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) { enqueueWriters(b, keyed) })
	}
}

var orderPayload = []byte(`{"order":"3f6c","customer":"c-42","total":1999,"currency":"EUR","lines":[{"sku":"sku_1","qty":2}]}`)

func enqueueWriters(b *testing.B, keyed bool) {
	bd := openBenchDB(b, "postgres")
	db := bd.db
	db.SetMaxOpenConns(writers + 4)
	db.SetMaxIdleConns(writers + 4)
	ctx := context.Background()
	type side struct {
		name string
		opts []sqloutbox.Option
		raw  bool
	}
	sides := []side{{name: "raw", raw: true}, {name: "enqueue"}, {name: "enqueue-without-notify", opts: []sqloutbox.Option{sqloutbox.WithoutNotify()}}}
	rounds := 5 * b.N
	if v, err := strconv.Atoi(os.Getenv("STEADFAST_ROUNDS")); err == nil && v > 0 {
		rounds = v * b.N
	}
	runs := make([][]cost, len(sides))
	counts := make([][]int64, len(sides))
	turn := func(sd side, d time.Duration) (cost, int64) {
		s, drop := bd.newTbl(b, sd.opts...)
		defer drop()
		orders := "bench_orders_" + strconv.FormatUint(uint64(time.Now().UnixNano()), 36)
		if _, err := db.Exec("CREATE TABLE " + orders + " (id uuid PRIMARY KEY, customer text NOT NULL, total bigint NOT NULL)"); err != nil {
			b.Fatal(err)
		}
		defer db.Exec("DROP TABLE " + orders)
		raw := "INSERT INTO " + s.Table() + " (id, topic, destination, partition_key, headers, payload, traceparent, not_before, available_at) VALUES ($1, $2, $2, $3, NULL, $4, NULL, NULL, now())"
		var n atomic.Int64
		c := measure(b, bd, func() {
			deadline := time.Now().Add(d)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					var key any
					msg := outbox.Message{Topic: "orders", Payload: orderPayload}
					if keyed {
						msg.Key = "customer-" + strconv.Itoa(w)
						key = msg.Key
					}
					for time.Now().Before(deadline) {
						tx, err := db.BeginTx(ctx, nil)
						if err != nil {
							b.Error(err)
							return
						}
						id, _ := uuid.NewV7()
						if _, err := tx.ExecContext(ctx, "INSERT INTO "+orders+" (id, customer, total) VALUES ($1, $2, $3)", id, "c-42", 1999); err != nil {
							b.Error(err)
							tx.Rollback()
							return
						}
						if sd.raw {
							mid, _ := uuid.NewV7()
							_, err = tx.ExecContext(ctx, raw, mid, "orders", key, orderPayload)
						} else {
							err = s.Enqueue(ctx, tx, msg)
						}
						if err != nil {
							b.Error(err)
							tx.Rollback()
							return
						}
						if err := tx.Commit(); err != nil {
							b.Error(err)
							return
						}
						n.Add(1)
					}
				})
			}
			wg.Wait()
		})
		return c, n.Load()
	}
	for _, sd := range sides { // warm up the pool and the plans
		turn(sd, 300*time.Millisecond)
	}
	b.ResetTimer()
	for r := range rounds {
		for j := range sides {
			i := (j + r) % len(sides)
			c, n := turn(sides[i], 2*time.Second)
			runs[i], counts[i] = append(runs[i], c), append(counts[i], n)
			b.Logf("round %d %-22s %6.0f tx/s  cpu %6.1f µs/tx  server %6.1f µs/tx  %5.1f allocs/tx", r, sides[i].name,
				float64(n)/c.wall.Seconds(), us(c.cpu, int(n)), us(c.server, int(n)), float64(c.mallocs)/float64(n))
		}
	}
	b.StopTimer()
	rate := func(i, k int) float64 { return float64(counts[i][k]) / runs[i][k].wall.Seconds() }
	perTx := func(i, k int) float64 { return float64(runs[i][k].cpu+runs[i][k].server) / float64(counts[i][k]) }
	for i, sd := range sides {
		var tps, cpu, srv, allocs []float64
		for k := range runs[i] {
			n := int(counts[i][k])
			tps = append(tps, rate(i, k))
			cpu = append(cpu, us(runs[i][k].cpu, n))
			srv = append(srv, us(runs[i][k].server, n))
			allocs = append(allocs, float64(runs[i][k].mallocs)/float64(n))
		}
		b.ReportMetric(medianOf(tps), sd.name+"-tx/s")
		b.ReportMetric(medianOf(cpu), sd.name+"-cpu-µs/tx")
		b.ReportMetric(medianOf(srv), sd.name+"-server-cpu-µs/tx")
		b.ReportMetric(medianOf(allocs), sd.name+"-allocs/tx")
		if i == 0 {
			continue
		}
		var wall, bycpu []float64
		for k := range runs[i] {
			wall = append(wall, rate(i, k)/rate(0, k))
			bycpu = append(bycpu, perTx(0, k)/perTx(i, k))
		}
		reportRatio(b, sd.name+"/raw", wall)
		reportRatio(b, sd.name+"/raw-by-cpu", bycpu)
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkCommitToPublish (issue 14 item 2) measures on PostgreSQL the
// time from a commit returning to the publish of its message starting, with
// a relay woken by LISTEN/NOTIFY (its poll interval at the default, 1 s):
// 16 writers commit bursts of 5 transactions each, one message each, then
// all pause 200 ms. It reports the p50 and p99 over all messages, and over
// the last message of each burst (the one committed last: no later
// notification can wake the relay for it), each as the median of the
// rounds' percentiles, with the range of the p99. Run it with -benchtime
// 1x (3 rounds of 40 bursts; b.N multiplies the rounds).
func BenchmarkCommitToPublish(b *testing.B) {
	bd := openBenchDB(b, "postgres")
	db := bd.db
	db.SetMaxOpenConns(writers + 8)
	db.SetMaxIdleConns(writers + 8)
	ctx := context.Background()
	const bursts, perWriter = 40, 5
	var allP50, allP99, lastP50, lastP99 []float64
	for r := range 3 * b.N {
		s, drop := bd.newTbl(b)
		var mu sync.Mutex
		published := map[string]time.Time{}
		pub := publisherFunc(func(ctx context.Context, d outbox.Delivery) error {
			now := time.Now()
			mu.Lock()
			published[d.ID] = now
			mu.Unlock()
			return nil
		})
		l, err := pgxoutbox.NewListener(s, db)
		if err != nil {
			b.Fatal(err)
		}
		relay, err := outbox.NewRelay(s, pub, outbox.WithNotifier(l), quietRelay)
		if err != nil {
			b.Fatal(err)
		}
		if err := relay.Start(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the listener is up
		type commit struct {
			id string
			at time.Time
		}
		var all []time.Duration
		var last []time.Duration
		for range bursts {
			commits := make([][]commit, writers)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for range perWriter {
						id, _ := uuid.NewV7()
						tx, err := db.BeginTx(ctx, nil)
						if err != nil {
							b.Error(err)
							return
						}
						if err := s.Enqueue(ctx, tx, outbox.Message{ID: id.String(), Topic: "orders", Payload: orderPayload}); err != nil {
							b.Error(err)
							tx.Rollback()
							return
						}
						if err := tx.Commit(); err != nil {
							b.Error(err)
							return
						}
						commits[w] = append(commits[w], commit{id.String(), time.Now()})
					}
				})
			}
			wg.Wait()
			flat := slices.Concat(commits...)
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				n := 0
				for _, c := range flat {
					if _, ok := published[c.id]; ok {
						n++
					}
				}
				mu.Unlock()
				if n == len(flat) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d messages of a burst published in 5 s", n, len(flat))
				}
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			lastOne := flat[0]
			for _, c := range flat {
				all = append(all, max(0, published[c.id].Sub(c.at)))
				if c.at.After(lastOne.at) {
					lastOne = c
				}
			}
			last = append(last, max(0, published[lastOne.id].Sub(lastOne.at)))
			mu.Unlock()
			time.Sleep(200 * time.Millisecond)
		}
		if err := relay.Stop(ctx); err != nil {
			b.Fatal(err)
		}
		drop()
		allP50, allP99 = append(allP50, ms(percentile(all, 50))), append(allP99, ms(percentile(all, 99)))
		lastP50, lastP99 = append(lastP50, ms(percentile(last, 50))), append(lastP99, ms(percentile(last, 99)))
		b.Logf("round %d: all p50 %.2f ms p99 %.2f ms; last of each burst p50 %.2f ms p99 %.2f ms (max %.2f ms)", r,
			allP50[r], allP99[r], lastP50[r], lastP99[r], ms(slices.Max(last)))
	}
	b.ReportMetric(medianOf(allP50), "p50-ms")
	reportRatio(b, "p99-ms", allP99)
	b.ReportMetric(medianOf(lastP50), "last-p50-ms")
	reportRatio(b, "last-p99-ms", lastP99)
	b.ReportMetric(0, "ns/op")
}

// quietRelay keeps benchmark relays from logging.
var quietRelay = outbox.WithLogger(slog.New(slog.DiscardHandler))
