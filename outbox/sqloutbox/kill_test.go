package sqloutbox_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testserver"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
)

// The helper process: a relay that appends every publish to a file, run by
// TestRelayKilled as a child and killed with SIGKILL at random points.
const (
	envTable = "OUTBOX_HELPER_TABLE"
	envLog   = "OUTBOX_HELPER_LOG"
	envStall = "OUTBOX_HELPER_STALL" // publish one message, then hang
)

// logPublisher appends "id position key" to a file for every publish; the
// write is done before Publish returns, so a kill after it leaves the
// message published but not marked.
type logPublisher struct {
	mu    sync.Mutex
	f     *os.File
	stall bool
	n     int
}

func (p *logPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	p.mu.Lock()
	if p.stall && p.n > 0 {
		p.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	p.n++
	_, err := fmt.Fprintf(p.f, "%s %d %s\n", d.ID, d.Position, d.Key)
	p.mu.Unlock()
	if p.stall {
		select {} // published, never marked: the parent kills us here
	}
	return err
}

func TestHelperRelayProcess(t *testing.T) {
	table := os.Getenv(envTable)
	if table == "" {
		t.Skip("helper process of TestRelayKilled")
	}
	url := os.Getenv("TEST_POSTGRES_URL")
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	s, err := sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	l, err := pgxoutbox.NewListener(s, db)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(os.Getenv(envLog), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	pub := &logPublisher{f: f, stall: os.Getenv(envStall) != ""}
	r, err := outbox.NewRelay(s, pub, outbox.WithLease(time.Second), outbox.WithPublishTimeout(500*time.Millisecond),
		outbox.WithPollInterval(50*time.Millisecond), outbox.WithNotifier(l), outbox.WithBackoff(5*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

type logLine struct {
	id  string
	pos int64
	key string
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) < 2 {
			continue // a line cut by the kill
		}
		pos, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			continue
		}
		l := logLine{id: parts[0], pos: pos}
		if len(parts) == 3 {
			l.key = parts[2]
		}
		out = append(out, l)
	}
	return out
}

func startHelper(t *testing.T, url, table, logPath string, stall bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRelayProcess$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), envTable+"="+table, envLog+"="+logPath, "TEST_POSTGRES_URL="+url)
	if stall {
		cmd.Env = append(cmd.Env, envStall+"=1")
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func kill(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

func pending(t *testing.T, s *sqloutbox.Store) int64 {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

// enqueueMany commits n messages, a quarter of them without a key and the
// rest over keys, in transactions of 500.
func enqueueMany(t *testing.T, db *sql.DB, s *sqloutbox.Store, n, keys int) {
	t.Helper()
	for i := 0; i < n; i += 500 {
		var batch []outbox.Message
		for j := i; j < min(i+500, n); j++ {
			key := ""
			if j%4 != 0 {
				key = "k" + strconv.Itoa(j%keys)
			}
			batch = append(batch, outbox.Message{Topic: "t", Key: key, Payload: []byte(strconv.Itoa(j))})
		}
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue(context.Background(), tx, batch...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLog checks that every message was published at least once and that,
// per key, positions never go back.
func checkLog(t *testing.T, lines []logLine, db *sql.DB, table string, n int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, l := range lines {
		seen[l.id] = true
		if l.key != "" {
			if p, ok := last[l.key]; ok && l.pos < p {
				t.Fatalf("key %s: position %d published after %d", l.key, l.pos, p)
			}
			last[l.key] = l.pos
		}
	}
	rows, err := db.Query("SELECT id::text FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	missing := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if !seen[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d messages were never published", missing, n)
	}
}

func TestRelayKilled(t *testing.T) {
	db, s, url := newPostgres(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	enqueueMany(t, db, s, n, 100)
	logPath := filepath.Join(t.TempDir(), "published.log")

	// Killed after publishing and before marking sent.
	child := startHelper(t, url, s.Table(), logPath, true)
	deadline := time.Now().Add(time.Minute)
	for len(readLog(t, logPath)) == 0 {
		if time.Now().After(deadline) {
			kill(child)
			t.Fatal("the helper published nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill(child)
	first := readLog(t, logPath)[0]

	// Killed again and again at random points.
	kills := 0
	for pending(t, s) > 0 && kills < 200 {
		child := startHelper(t, url, s.Table(), logPath, false)
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		kill(child)
		kills++
	}
	// Then one that is left to finish.
	child = startHelper(t, url, s.Table(), logPath, false)
	deadline = time.Now().Add(3 * time.Minute)
	for pending(t, s) > 0 {
		if time.Now().After(deadline) {
			kill(child)
			t.Fatalf("%d messages still pending", pending(t, s))
		}
		time.Sleep(50 * time.Millisecond)
	}
	kill(child)
	t.Logf("%d kills", kills+1)

	lines := readLog(t, logPath)
	again := 0
	for _, l := range lines {
		if l.id == first.id {
			again++
		}
	}
	if again < 2 {
		t.Errorf("message %s, published before the kill and never marked, was published %d time(s), want again with the same id", first.id, again)
	}
	checkLog(t, lines, db, s.Table(), n)
}

// TestPostgresRestart restarts a PostgreSQL cluster of the test's own while
// a relay drains a backlog: the relay reconnects by itself (pool and
// listener) and the backlog drains.
func TestPostgresRestart(t *testing.T) {
	pg := testserver.StartPostgres(t)
	db, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	s, err := sqloutbox.New(db, steadfast.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	n := 5000
	if testing.Short() {
		n = 1000
	}
	enqueueMany(t, db, s, n, 50)
	l, err := pgxoutbox.NewListener(s, db)
	if err != nil {
		t.Fatal(err)
	}
	var published sync.Map
	// A slowish destination, so that the restart lands mid-backlog.
	rec := &outboxtest.Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		published.Store(d.ID, true)
		time.Sleep(time.Millisecond)
		return nil
	}}
	r, err := outbox.NewRelay(s, rec, outbox.WithNotifier(l), outbox.WithPollInterval(100*time.Millisecond),
		outbox.WithBatchSize(20), outbox.WithDestinationConcurrency(2), outbox.WithLease(5*time.Second), outbox.WithPublishTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer stopRelay(t, r)
	rec.WaitFor(t, time.Minute, n/10)
	before := pending(t, s)
	pg.Kill(t) // as a crash would
	pg.Start(t)
	t.Logf("%d messages were pending when the server was killed", before)
	// Messages enqueued after the restart arrive too (the listener is back
	// or the poll finds them).
	enqueueMany(t, db, s, 100, 10)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := s.Stats(ctx)
		if err == nil && st.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained after the restart: %+v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := 0
	published.Range(func(any, any) bool { total++; return true })
	if total != n+100 {
		t.Errorf("%d distinct messages published, want %d", total, n+100)
	}
}

func stopRelay(t *testing.T, r *outbox.Relay) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}
