package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// BenchmarkScale: flat as the work grows (issue 14 item 5). Three stores
// on one pool, their record and inbox tables seeded with 10,000, 100,000
// and 1,000,000 rows (live completed records; processed messages), measure
// the same operations in turn, rounds alternating between the sizes:
//
//   - claim: Claim of a new key (random, so that it lands anywhere in the
//     key index, as real keys do);
//   - replay: Claim of a random seeded (completed) key;
//   - inbox: MarkProcessed of a new message id in a transaction of its own
//     (the latency is MarkProcessed's; the throughput counts whole
//     transactions, begin to commit).
//
// Each turn runs one caller for 300ms (its p50 and p99: the latency of the
// operation alone) and then 16 callers for 700ms (their throughput, and
// their p50 with the queueing). Reported per size: p50-µs and p99-µs (one
// caller), p50x16-µs and ops/s (16 callers), each the median over the
// rounds; and 1M/10k-p50 (and 100k/10k-p50), the per-round ratio of the
// one-caller p50s, as a median with its range. The tables grow by the new
// keys and messages of the run (a few thousand rows per size).
//
// Seeding a million rows per table stays out of CI and of the benchmarks
// module: the benchmark runs only with STEADFAST_SCALE=1
// (STEADFAST_SCALE_ROWS=1000,5000 tries it on small tables).
//
//	STEADFAST_SCALE=1 go test -run '^$' -bench 'Scale/postgres' -benchtime 1x -timeout 1h ./idempotency/sqlstore/
func BenchmarkScale(b *testing.B) {
	if os.Getenv("STEADFAST_SCALE") != "1" {
		b.Skip("scale benchmark: set STEADFAST_SCALE=1")
	}
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			db := openDB(b, d, benchConns(d))
			sizes := scaleSizes(b)
			envs := make([]*scaleEnv, len(sizes))
			for i, n := range sizes {
				start := time.Now()
				envs[i] = newScaleEnv(b, db, d, n)
				b.Logf("%s: seeded %d records and %d inbox rows in %v", d, n, n, time.Since(start).Round(time.Millisecond))
			}
			for _, op := range scaleOps {
				b.Run(op.name, func(b *testing.B) { runScale(b, envs, op) })
			}
		})
	}
}

// scaleSizes returns the table sizes: 10,000, 100,000 and 1,000,000 rows,
// or those of STEADFAST_SCALE_ROWS (comma-separated, smallest first) to try
// the benchmark out quickly.
func scaleSizes(b *testing.B) []int {
	v := os.Getenv("STEADFAST_SCALE_ROWS")
	if v == "" {
		return []int{10_000, 100_000, 1_000_000}
	}
	var sizes []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("STEADFAST_SCALE_ROWS=%q: %q is not a positive number", v, f)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

func sizeName(n int) string {
	switch {
	case n >= 1_000_000:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1_000:
		return strconv.Itoa(n/1_000) + "k"
	}
	return strconv.Itoa(n)
}

// scaleEnv is one store whose tables hold n seeded rows.
type scaleEnv struct {
	d  steadfast.Dialect
	db *sql.DB
	s  *sqlstore.Store
	n  int
}

// seedKey is the key of the i-th seeded record (i from 1): a
// multiplicative hash first, so that the keys spread over the index.
func seedKey(i int64) string {
	return "seed-" + strconv.FormatInt(i*2654435761%4294967296, 10) + "-" + strconv.FormatInt(i, 10)
}

// newKey returns a key no seeded record has, anywhere in the key order.
func newKey(r *rand.Rand) string {
	return "seed-" + strconv.FormatUint(r.Uint64()%4294967296, 10) + "-n" + strconv.FormatUint(r.Uint64(), 36)
}

func newScaleEnv(b *testing.B, db *sql.DB, d steadfast.Dialect, n int) *scaleEnv {
	b.Helper()
	e := &scaleEnv{d: d, db: db, s: newStoreOn(b, db, d), n: n}
	ctx := context.Background()
	chunk := 10_000
	if d == steadfast.MySQL {
		chunk = 1_000 // MariaDB's max_recursive_iterations defaults to 1000
	}
	for lo := 1; lo <= n; lo += chunk {
		hi := min(lo+chunk-1, n)
		for _, q := range e.seedStatements() {
			if _, err := db.ExecContext(ctx, q, lo, hi); err != nil {
				b.Fatalf("seeding: %v", err)
			}
		}
	}
	var maintenance []string
	switch d {
	case steadfast.Postgres:
		maintenance = []string{"VACUUM ANALYZE " + e.s.Table(), "VACUUM ANALYZE " + e.s.Table() + "_inbox"}
	case steadfast.MySQL:
		maintenance = []string{"ANALYZE TABLE " + e.s.Table(), "ANALYZE TABLE " + e.s.Table() + "_inbox"}
	default:
		maintenance = []string{"ANALYZE"}
	}
	for _, q := range maintenance {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	var got int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+e.s.Table()).Scan(&got); err != nil || got != n {
		b.Fatalf("seeded %d records, want %d (%v)", got, n, err)
	}
	return e
}

// seedStatements insert the records and inbox rows lo..hi (two
// parameters): completed records kept for a day, on the server's clock as
// the store keeps them, with a 64-byte fingerprint and a 100-byte response.
func (e *scaleEnv) seedStatements() []string {
	t, inbox := e.s.Table(), e.s.Table()+"_inbox"
	const keyExpr = `'seed-' || (x * 2654435761 % 4294967296) || '-' || x`
	switch e.d {
	case steadfast.Postgres:
		now := `(date_part('epoch', clock_timestamp()) * 1000000)::BIGINT`
		return []string{
			`INSERT INTO ` + t + ` (idem_key, fingerprint, status, token, lease_until, expires_at, response)
SELECT ` + keyExpr + `, md5(x::text) || md5((x + 1)::text), 2, x, 0, ` + now + ` + 86400000000, convert_to(repeat('r', 100), 'UTF8')
FROM generate_series($1::bigint, $2::bigint) AS g(x)`,
			`INSERT INTO ` + inbox + ` (consumer, message_id, processed_at)
SELECT 'scale', ` + keyExpr + `, ` + now + ` FROM generate_series($1::bigint, $2::bigint) AS g(x)`,
		}
	case steadfast.MySQL:
		now := `TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))`
		key := `CONCAT('seed-', x * 2654435761 % 4294967296, '-', x)`
		gen := `WITH RECURSIVE g(x) AS (SELECT CAST(? AS SIGNED) UNION ALL SELECT x + 1 FROM g WHERE x < ?) `
		return []string{
			`INSERT INTO ` + t + ` (idem_key, fingerprint, status, token, lease_until, expires_at, response)
` + gen + `SELECT ` + key + `, CONCAT(MD5(x), MD5(x + 1)), 2, x, 0, ` + now + ` + 86400000000, REPEAT('r', 100) FROM g`,
			`INSERT INTO ` + inbox + ` (consumer, message_id, processed_at)
` + gen + `SELECT 'scale', ` + key + `, ` + now + ` FROM g`,
		}
	default:
		now := `(CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)`
		gen := `WITH RECURSIVE g(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM g WHERE x < ?2) `
		return []string{
			gen + `INSERT INTO ` + t + ` (idem_key, fingerprint, status, token, lease_until, expires_at, response)
SELECT ` + keyExpr + `, printf('%064d', x), 2, x, 0, ` + now + ` + 86400000000, CAST(printf('%0100d', 0) AS BLOB) FROM g`,
			gen + `INSERT INTO ` + inbox + ` (consumer, message_id, processed_at)
SELECT 'scale', ` + keyExpr + `, ` + now + ` FROM g`,
		}
	}
}

// A scaleOp runs one operation on e and returns the latency to record.
type scaleOp struct {
	name string
	run  func(ctx context.Context, e *scaleEnv, r *rand.Rand) (time.Duration, error)
}

var scaleOps = []scaleOp{
	{"claim", func(ctx context.Context, e *scaleEnv, r *rand.Rand) (time.Duration, error) {
		start := time.Now()
		c, err := e.s.Claim(ctx, newKey(r), "fp", time.Hour)
		el := time.Since(start)
		if err == nil && !c.Acquired {
			err = fmt.Errorf("new key not acquired: %+v", c)
		}
		return el, err
	}},
	{"replay", func(ctx context.Context, e *scaleEnv, r *rand.Rand) (time.Duration, error) {
		start := time.Now()
		c, err := e.s.Claim(ctx, seedKey(1+r.Int64N(int64(e.n))), "fp", time.Hour)
		el := time.Since(start)
		if err == nil && (c.Acquired || c.Record.Status != idempotency.StatusCompleted) {
			err = fmt.Errorf("seeded key: %+v", c)
		}
		return el, err
	}},
	{"inbox", func(ctx context.Context, e *scaleEnv, r *rand.Rand) (time.Duration, error) {
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		first, err := e.s.MarkProcessed(ctx, tx, "scale", newKey(r))
		el := time.Since(start)
		if err == nil && !first {
			err = fmt.Errorf("a new message id was seen before")
		}
		if err != nil {
			_ = tx.Rollback()
			return 0, err
		}
		return el, tx.Commit()
	}},
}

// scaleTurn is what one turn measured.
type scaleTurn struct {
	p50, p99, p50x16 time.Duration
	opsPerSec        float64
}

func runScale(b *testing.B, envs []*scaleEnv, op scaleOp) {
	const rounds = 5
	turns := make([][]scaleTurn, len(envs))
	for _, e := range envs { // warm up
		scaleRun(b, e, op, 1, 100*time.Millisecond)
	}
	for r := 0; r < rounds*b.N; r++ {
		for j := range envs {
			i := (j + r) % len(envs)
			one := scaleRun(b, envs[i], op, 1, 300*time.Millisecond)
			many := scaleRun(b, envs[i], op, benchCallers, 700*time.Millisecond)
			turns[i] = append(turns[i], scaleTurn{p50: one.p50, p99: one.p99, p50x16: many.p50, opsPerSec: many.opsPerSec})
		}
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	for i, e := range envs {
		name := sizeName(e.n)
		var p50, p99, p50x16, ops []float64
		for _, t := range turns[i] {
			p50, p99, p50x16, ops = append(p50, us(t.p50)), append(p99, us(t.p99)), append(p50x16, us(t.p50x16)), append(ops, t.opsPerSec)
		}
		b.ReportMetric(median(p50), name+"-p50-µs")
		b.ReportMetric(median(p99), name+"-p99-µs")
		b.ReportMetric(median(p50x16), name+"-p50x16-µs")
		b.ReportMetric(median(ops), name+"-ops/s")
		if i == 0 {
			continue
		}
		ratios := make([]float64, len(turns[i]))
		for k := range ratios {
			ratios[k] = float64(turns[i][k].p50) / float64(turns[0][k].p50)
		}
		rn := name + "/" + sizeName(envs[0].n) + "-p50"
		b.ReportMetric(median(ratios), rn)
		b.ReportMetric(slices.Min(ratios), rn+"-min")
		b.ReportMetric(slices.Max(ratios), rn+"-max")
	}
	b.ReportMetric(0, "ns/op")
}

// scaleRun runs op on e with callers concurrent callers for d.
func scaleRun(b *testing.B, e *scaleEnv, op scaleOp, callers int, d time.Duration) scaleTurn {
	b.Helper()
	var (
		mu     sync.Mutex
		lats   []time.Duration
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range callers {
		wg.Go(func() {
			ctx := context.Background()
			r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			var mine []time.Duration
			for !failed.Load() && time.Now().Before(deadline) {
				el, err := op.run(ctx, e, r)
				if err != nil {
					if !failed.Swap(true) {
						b.Errorf("%s on %d rows: %v", op.name, e.n, err)
					}
					return
				}
				mine = append(mine, el)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if failed.Load() || len(lats) == 0 {
		b.FailNow()
	}
	el := time.Since(start)
	slices.Sort(lats)
	return scaleTurn{
		p50:       lats[len(lats)/2],
		p99:       lats[len(lats)*99/100],
		opsPerSec: float64(len(lats)) / el.Seconds(),
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
