package testserver_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/internal/testserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPostgresKillAndStart(t *testing.T) {
	t.Parallel()
	pg := testserver.StartPostgres(t)
	ctx := context.Background()
	db, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	pg.Kill(t)
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("ping succeeded while the cluster was down")
	}
	pg.Start(t)
	var v int
	if err := db.QueryRowContext(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: v=%d err=%v", v, err)
	}
}

func TestRedisAOFSurvivesKill(t *testing.T) {
	t.Parallel()
	r := testserver.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Kill(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded while the server was down")
	}
	r.Start(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart: %q %v", got, err)
	}
}

// TestRedisStartWaitsForLoading: Start returns once the server answers
// commands, not when it accepts connections: a restarted Redis answers
// "LOADING" while it reads its dataset back (CI failed
// TestRedisAOFSurvivesKill on it once).
func TestRedisStartWaitsForLoading(t *testing.T) {
	t.Parallel()
	r := testserver.StartRedis(t, "--enable-debug-command", "yes")
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	// A dataset that takes a while to load: a few hundred milliseconds.
	if err := c.Do(ctx, "DEBUG", "POPULATE", 1_000_000).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r.Kill(t)
	r.Start(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("right after Start: %v", err)
	}
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 1_000_000 {
		t.Fatalf("after restart: %d keys, %v", n, err)
	}
}

func TestNATSStartStop(t *testing.T) {
	t.Parallel()
	n := testserver.StartNATS(t)
	addr := strings.TrimPrefix(n.URL(), "nats://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || !strings.HasPrefix(line, "INFO ") || !strings.Contains(line, `"jetstream":true`) {
		t.Fatalf("nats greeting %q, %v", line, err)
	}
	n.Stop(t)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("dial succeeded after Stop")
	}
	n.Start(t)
}

func TestProxyCutHangRestore(t *testing.T) {
	t.Parallel()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p := testserver.NewProxy(t, echo.Addr().String())

	roundTrip := func(c net.Conn, msg string) error {
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := fmt.Fprint(c, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("got %q", buf)
		}
		return nil
	}

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "hello"); err != nil {
		t.Fatalf("forwarding: %v", err)
	}
	p.Hang()
	if err := roundTrip(c, "stuck"); err == nil {
		t.Fatal("a hung proxy forwarded bytes")
	}
	p.Cut()
	if err := roundTrip(c, "x"); err == nil {
		t.Fatal("a cut connection still works")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		if err := roundTrip(c2, "y"); err == nil {
			t.Fatal("a new connection works while cut")
		}
		c2.Close()
	}
	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3, "again"); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

// TestPostgresFromPrivateTempDir starts a cluster while TMPDIR is a folder
// that only root can enter, as on a machine with a per-user private TMPDIR:
// the cluster's files must still be reachable by the postgres OS user.
func TestPostgresFromPrivateTempDir(t *testing.T) {
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", private)
	pg := testserver.StartPostgres(t)
	db, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}
