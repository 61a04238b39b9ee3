package sqloutbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// BenchmarkRelayRatio (issue 14 item 1) drains a table of ratioMessages
// pending messages (200-byte payloads) four ways, each alone, in rounds
// whose order rotates (STYLE rule 14):
//
//   - ceiling: 4 workers, each claiming 100 rows with SKIP LOCKED (SQLite:
//     its single writer) and marking them delivered in the same
//     transaction. It holds its row locks while "publishing", so it is the
//     database's ceiling, not a valid relay;
//   - lease: the hand-written lease loop, 4 workers, each claiming 100 rows
//     under a lease in one transaction and marking them delivered, guarded
//     by the claim's token, in another: the least work a relay that
//     publishes outside the claiming transaction does;
//   - unordered: an outbox.Relay at its defaults, no-op publisher, no keys;
//   - ordered: the same over 1,000 partition keys.
//
// Each side gets a fresh table filled through Enqueue (untimed). For each
// side it reports the median over the rounds of msgs/s (wall time: on a
// shared machine, read it beside the CPU figures), this process's CPU time
// per message (cpu-µs/msg), the database server's (server-cpu-µs/msg: the
// PostgreSQL backends of this benchmark's pool; on MariaDB the whole
// server, others' load included; SQLite runs in this process), and
// allocations and bytes per message; then the ratios unordered/ceiling,
// unordered/lease and ordered/unordered per round, as a median with its
// range, by wall time and by total CPU time (client plus server) per
// message.
//
// Run with -benchtime 1x (b.N multiplies the 3 rounds). STEADFAST_MESSAGES
// changes the number of messages (20,000 under -short), STEADFAST_ROUNDS
// the number of rounds; STEADFAST_SIDES
// (a comma-separated list of side names) runs only those sides, without
// the ratios.
func BenchmarkRelayRatio(b *testing.B) {
	for _, d := range []string{"postgres", "sqlite", "mysql"} {
		b.Run(d, func(b *testing.B) { relayRatio(b, d) })
	}
}

func ratioMessages() int {
	if v, err := strconv.Atoi(os.Getenv("STEADFAST_MESSAGES")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 20000
	}
	return 100000
}

// benchDB is a database for a benchmark: a pool of its own, and a way to
// read the server's CPU time spent on it.
type benchDB struct {
	db      *sql.DB
	dialect steadfast.Dialect
	server  func() (map[int]time.Duration, error)
	newTbl  func(b *testing.B, opts ...sqloutbox.Option) (*sqloutbox.Store, func())
}

func openBenchDB(b *testing.B, dialect string) *benchDB {
	b.Helper()
	switch dialect {
	case "postgres":
		raw := testenv.PostgresURL(b)
		app := fmt.Sprintf("steadfast_bench_%x", rand.Uint32())
		u, err := url.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		q := u.Query()
		q.Set("application_name", app)
		u.RawQuery = q.Encode()
		db, err := sql.Open("pgx", u.String())
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(12)
		db.SetMaxIdleConns(12)
		b.Cleanup(func() { db.Close() })
		bd := &benchDB{db: db, dialect: steadfast.Postgres}
		bd.server = func() (map[int]time.Duration, error) {
			rows, err := db.Query("SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			out := map[int]time.Duration{}
			for rows.Next() {
				var pid int
				if err := rows.Scan(&pid); err != nil {
					return nil, err
				}
				out[pid] = procCPU(strconv.Itoa(pid))
			}
			return out, rows.Err()
		}
		bd.newTbl = func(b *testing.B, opts ...sqloutbox.Option) (*sqloutbox.Store, func()) {
			table := tableName()
			s, err := sqloutbox.New(db, steadfast.Postgres, append([]sqloutbox.Option{sqloutbox.WithTable(table)}, opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			return s, func() {
				db.Exec("DROP TABLE IF EXISTS " + table)
				db.Exec("DROP TABLE IF EXISTS " + table + "_pauses")
			}
		}
		return bd
	case "mysql":
		raw := testenv.MySQLURL(b)
		db, err := sql.Open("mysql", raw)
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(12)
		db.SetMaxIdleConns(12)
		b.Cleanup(func() { db.Close() })
		bd := &benchDB{db: db, dialect: steadfast.MySQL}
		if pid := pidOf("mariadbd", "mysqld"); pid != "" {
			bd.server = func() (map[int]time.Duration, error) {
				return map[int]time.Duration{0: procCPU(pid)}, nil
			}
		}
		bd.newTbl = func(b *testing.B, opts ...sqloutbox.Option) (*sqloutbox.Store, func()) {
			table := tableName()
			s, err := sqloutbox.New(db, steadfast.MySQL, append([]sqloutbox.Option{sqloutbox.WithTable(table)}, opts...)...)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			return s, func() {
				for _, t := range []string{table, table + "_keys", table + "_pauses"} {
					db.Exec("DROP TABLE IF EXISTS " + t)
				}
			}
		}
		return bd
	case "sqlite":
		bd := &benchDB{dialect: steadfast.SQLite}
		bd.newTbl = func(b *testing.B, opts ...sqloutbox.Option) (*sqloutbox.Store, func()) {
			dir, err := os.MkdirTemp("", "sqloutbox-bench")
			if err != nil {
				b.Fatal(err)
			}
			db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "outbox.db")))
			if err != nil {
				b.Fatal(err)
			}
			bd.db = db
			s, err := sqloutbox.New(db, steadfast.SQLite, opts...)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			return s, func() { db.Close(); os.RemoveAll(dir) }
		}
		return bd
	}
	b.Fatalf("unknown dialect %s", dialect)
	return nil
}

// procCPU returns the user and system CPU time of process pid (or of this
// process when pid is "self"), 0 when it cannot be read.
func procCPU(pid string) time.Duration {
	if pid == "self" {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ
}

func pidOf(names ...string) string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if slices.Contains(names, strings.TrimSpace(string(comm))) {
			return e.Name()
		}
	}
	return ""
}

// cost is what one timed piece of work cost.
type cost struct {
	wall, cpu, server time.Duration
	mallocs, bytes    uint64
}

// measure runs f and returns what it cost.
func measure(b *testing.B, bd *benchDB, f func()) cost {
	b.Helper()
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var srv0 map[int]time.Duration
	if bd.server != nil {
		var err error
		if srv0, err = bd.server(); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := procCPU("self")
	start := time.Now()
	f()
	c := cost{wall: time.Since(start), cpu: procCPU("self") - cpu0}
	runtime.ReadMemStats(&ms1)
	c.mallocs, c.bytes = ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc
	if bd.server != nil {
		srv1, err := bd.server()
		if err != nil {
			b.Fatal(err)
		}
		for pid, t := range srv1 {
			c.server += t - srv0[pid]
		}
	}
	return c
}

// ratioPayload is 200 bytes.
var ratioPayload = []byte(`{"order":"ord_000001","customer":"cus_000001","amount":4200,"currency":"EUR","items":[{"sku":"sku_1","qty":2},{"sku":"sku_2","qty":1},{"sku":"sku_3","qty":5}],"note":"deliver to the back door, ring twice please"}`)

// fillStore enqueues n messages over keys partition keys (none when 0) in
// transactions of 1,000, and analyses the table.
func fillStore(b *testing.B, db *sql.DB, s *sqloutbox.Store, n, keys int) {
	b.Helper()
	ctx := context.Background()
	batch := make([]outbox.Message, 0, 1000)
	for i := 0; i < n; i += 1000 {
		batch = batch[:0]
		for j := i; j < min(i+1000, n); j++ {
			m := outbox.Message{Topic: "bench", Payload: ratioPayload}
			if keys > 0 {
				m.Key = "k" + strconv.Itoa(j%keys)
			}
			batch = append(batch, m)
		}
		if err := s.EnqueueWithoutTx(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	analyze(b, db, s)
}

func analyze(b *testing.B, db *sql.DB, s *sqloutbox.Store) {
	b.Helper()
	q := "ANALYZE " + s.Table()
	if s.Dialect() == steadfast.MySQL {
		q = "ANALYZE TABLE " + s.Table()
	}
	if s.Dialect() == steadfast.SQLite {
		q = "ANALYZE"
	}
	if _, err := db.Exec(q); err != nil {
		b.Fatal(err)
	}
}

// pendingLeft counts messages not delivered.
func pendingLeft(b *testing.B, db *sql.DB, s *sqloutbox.Store) int64 {
	b.Helper()
	var left int64
	if err := db.QueryRow("SELECT count(*) FROM " + s.Table() + " WHERE state = 0").Scan(&left); err != nil {
		b.Fatal(err)
	}
	return left
}

// workers runs 4 copies of step until one returns 0 (nothing left) or an
// error.
func workers(b *testing.B, step func() (int, error)) {
	b.Helper()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				n, err := step()
				if err != nil {
					b.Error(err)
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
}

func collectSeqs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	seqs := make([]int64, 0, 100)
	for rows.Next() {
		var s int64
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		seqs = append(seqs, s)
	}
	return seqs, rows.Err()
}

func inList(seqs []int64) (string, []any) {
	args := make([]any, len(seqs))
	for i, s := range seqs {
		args[i] = s
	}
	return strings.TrimSuffix(strings.Repeat("?,", len(seqs)), ","), args
}

// ceilingDrain is the claim-and-mark ceiling of the dialect.
func ceilingDrain(b *testing.B, db *sql.DB, s *sqloutbox.Store) {
	t := s.Table()
	ctx := context.Background()
	switch s.Dialect() {
	case steadfast.Postgres:
		claim := `SELECT seq FROM ` + t + ` WHERE state = 0 AND available_at <= now() ORDER BY available_at LIMIT 100 FOR UPDATE SKIP LOCKED`
		mark := `UPDATE ` + t + ` SET state = 1, done_at = now() WHERE seq = ANY ($1)`
		workers(b, func() (int, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return 0, err
			}
			defer tx.Rollback()
			rows, err := tx.Query(claim)
			if err != nil {
				return 0, err
			}
			seqs, err := collectSeqs(rows)
			if err != nil || len(seqs) == 0 {
				return 0, err
			}
			if _, err := tx.Exec(mark, seqs); err != nil {
				return 0, err
			}
			return len(seqs), tx.Commit()
		})
	case steadfast.MySQL, steadfast.SQLite:
		now, lock := "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)", " FOR UPDATE SKIP LOCKED"
		var opts *sql.TxOptions
		if s.Dialect() == steadfast.SQLite {
			now, lock = "CAST(unixepoch('subsec') * 1000000 AS INTEGER)", ""
		} else {
			opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
		}
		claim := `SELECT seq FROM ` + t + ` WHERE state = 0 AND available_at <= ` + now + ` ORDER BY available_at LIMIT 100` + lock
		workers(b, func() (int, error) {
			tx, err := db.BeginTx(ctx, opts)
			if err != nil {
				return 0, err
			}
			defer tx.Rollback()
			rows, err := tx.Query(claim)
			if err != nil {
				return 0, err
			}
			seqs, err := collectSeqs(rows)
			if err != nil || len(seqs) == 0 {
				return 0, err
			}
			in, args := inList(seqs)
			if _, err := tx.Exec(`UPDATE `+t+` SET state = 1, done_at = `+now+` WHERE seq IN (`+in+`)`, args...); err != nil {
				return 0, err
			}
			return len(seqs), tx.Commit()
		})
	}
}

// leaseDrainAll is the hand-written lease loop of the dialect.
func leaseDrainAll(b *testing.B, db *sql.DB, s *sqloutbox.Store) {
	t := s.Table()
	ctx := context.Background()
	switch s.Dialect() {
	case steadfast.Postgres:
		leaseDrain(b, db, t)
	case steadfast.SQLite:
		now := "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
		claim := `UPDATE ` + t + ` SET claim_token = ?, available_at = ` + now + ` + 60000000 WHERE seq IN (
	SELECT seq FROM ` + t + ` WHERE state = 0 AND available_at <= ` + now + ` ORDER BY available_at LIMIT 100) RETURNING seq`
		workers(b, func() (int, error) {
			tok := uuid.NewString()
			rows, err := db.QueryContext(ctx, claim, tok)
			if err != nil {
				return 0, err
			}
			seqs, err := collectSeqs(rows)
			if err != nil || len(seqs) == 0 {
				return 0, err
			}
			in, args := inList(seqs)
			_, err = db.ExecContext(ctx, `UPDATE `+t+` SET state = 1, done_at = `+now+`, claim_token = NULL WHERE claim_token = ? AND seq IN (`+in+`)`,
				append([]any{tok}, args...)...)
			return len(seqs), err
		})
	case steadfast.MySQL:
		now := "CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
		claim := `SELECT seq FROM ` + t + ` WHERE state = 0 AND available_at <= ` + now + ` ORDER BY available_at LIMIT 100 FOR UPDATE SKIP LOCKED`
		workers(b, func() (int, error) {
			tok := uuid.NewString()
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
			if err != nil {
				return 0, err
			}
			defer tx.Rollback()
			rows, err := tx.Query(claim)
			if err != nil {
				return 0, err
			}
			seqs, err := collectSeqs(rows)
			if err != nil || len(seqs) == 0 {
				return 0, err
			}
			in, args := inList(seqs)
			if _, err := tx.Exec(`UPDATE `+t+` SET claim_token = ?, available_at = `+now+` + 60000000 WHERE seq IN (`+in+`)`, append([]any{tok}, args...)...); err != nil {
				return 0, err
			}
			if err := tx.Commit(); err != nil {
				return 0, err
			}
			_, err = db.ExecContext(ctx, `UPDATE `+t+` SET state = 1, done_at = `+now+`, claim_token = NULL WHERE claim_token = ? AND seq IN (`+in+`)`,
				append([]any{tok}, args...)...)
			return len(seqs), err
		})
	}
}

// relayDrainQuiet is relayDrain with a relay that logs nothing.
func relayDrainQuiet(b *testing.B, s *sqloutbox.Store, n int, opts ...outbox.Option) {
	b.Helper()
	p := &countingPublisher{want: int64(n), done: make(chan struct{})}
	r, err := outbox.NewRelay(s, p, append([]outbox.Option{outbox.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("published %d of %d in 10 minutes", p.n.Load(), n)
	}
	if err := r.Stop(context.Background()); err != nil { // writes the last outcomes back
		b.Fatal(err)
	}
}

type ratioSide struct {
	name  string
	keys  int
	drain func(b *testing.B, db *sql.DB, s *sqloutbox.Store, n int)
	opts  []sqloutbox.Option // of the store
}

func ratioSides() []ratioSide {
	return []ratioSide{
		{name: "ceiling", drain: func(b *testing.B, db *sql.DB, s *sqloutbox.Store, n int) { ceilingDrain(b, db, s) }},
		{name: "lease", drain: func(b *testing.B, db *sql.DB, s *sqloutbox.Store, n int) { leaseDrainAll(b, db, s) }},
		{name: "unordered", drain: func(b *testing.B, db *sql.DB, s *sqloutbox.Store, n int) { relayDrainQuiet(b, s, n) }},
		{name: "ordered", keys: 1000, drain: func(b *testing.B, db *sql.DB, s *sqloutbox.Store, n int) { relayDrainQuiet(b, s, n) }},
	}
}

func relayRatio(b *testing.B, dialect string) {
	sides := ratioSides()
	runs := runSides(b, dialect, sides)
	if len(runs) == 4 {
		ratio := func(name string, num, den int) {
			wall := make([]float64, len(runs[0]))
			cpu := make([]float64, len(runs[0]))
			for k := range wall {
				wall[k] = runs[den][k].wall.Seconds() / runs[num][k].wall.Seconds()
				cpu[k] = float64(runs[den][k].cpu+runs[den][k].server) / float64(runs[num][k].cpu+runs[num][k].server)
			}
			reportRatio(b, name, wall)
			reportRatio(b, name+"-by-cpu", cpu)
		}
		ratio("unordered/ceiling", 2, 0)
		ratio("unordered/lease", 2, 1)
		ratio("ordered/unordered", 3, 2)
	}
	b.ReportMetric(0, "ns/op")
}

// runSides measures each side alone, 3 × b.N rounds whose order rotates,
// reports each side's medians and returns the costs by side and round
// (none when STEADFAST_SIDES left out some side).
func runSides(b *testing.B, dialect string, sides []ratioSide) [][]cost {
	bd := openBenchDB(b, dialect)
	n := ratioMessages()
	all := len(sides)
	if only := os.Getenv("STEADFAST_SIDES"); only != "" {
		sides = slices.DeleteFunc(sides, func(s ratioSide) bool { return !slices.Contains(strings.Split(only, ","), s.name) })
	}
	runs := make([][]cost, len(sides))
	rounds := 3 * b.N
	if v, err := strconv.Atoi(os.Getenv("STEADFAST_ROUNDS")); err == nil && v > 0 {
		rounds = v * b.N
	}
	b.ResetTimer()
	for r := range rounds {
		for j := range sides {
			i := (j + r) % len(sides)
			sd := sides[i]
			b.StopTimer()
			s, drop := bd.newTbl(b, sd.opts...)
			fillStore(b, bd.db, s, n, sd.keys)
			b.StartTimer()
			c := measure(b, bd, func() { sd.drain(b, bd.db, s, n) })
			b.StopTimer()
			if left := pendingLeft(b, bd.db, s); left != 0 {
				b.Fatalf("%s: %d messages left", sd.name, left)
			}
			drop()
			b.StartTimer()
			runs[i] = append(runs[i], c)
			b.Logf("round %d %-9s %8.0f msgs/s  cpu %6.2f µs/msg  server %6.2f µs/msg  %5.1f allocs/msg  %6.0f B/msg",
				r, sd.name, float64(n)/c.wall.Seconds(), us(c.cpu, n), us(c.server, n), float64(c.mallocs)/float64(n), float64(c.bytes)/float64(n))
		}
	}
	b.StopTimer()
	reportSides(b, n, sides, runs)
	if len(sides) < all {
		return nil
	}
	return runs
}

func us(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }

func reportSides(b *testing.B, n int, sides []ratioSide, runs [][]cost) {
	for i, sd := range sides {
		med := func(f func(c cost) float64) float64 {
			v := make([]float64, len(runs[i]))
			for k, c := range runs[i] {
				v[k] = f(c)
			}
			return medianOf(v)
		}
		b.ReportMetric(med(func(c cost) float64 { return float64(n) / c.wall.Seconds() }), sd.name+"-msgs/s")
		b.ReportMetric(med(func(c cost) float64 { return us(c.cpu, n) }), sd.name+"-cpu-µs/msg")
		b.ReportMetric(med(func(c cost) float64 { return us(c.server, n) }), sd.name+"-server-cpu-µs/msg")
		b.ReportMetric(med(func(c cost) float64 { return float64(c.mallocs) / float64(n) }), sd.name+"-allocs/msg")
		b.ReportMetric(med(func(c cost) float64 { return float64(c.bytes) / float64(n) }), sd.name+"-B/msg")
	}
}

func reportRatio(b *testing.B, name string, v []float64) {
	b.ReportMetric(medianOf(v), name)
	b.ReportMetric(slices.Min(v), name+"-min")
	b.ReportMetric(slices.Max(v), name+"-max")
}

func medianOf(v []float64) float64 {
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
