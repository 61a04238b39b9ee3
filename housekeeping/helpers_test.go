package housekeeping_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) {
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	if os.Getenv(childVar) != "" {
		os.Exit(child())
	}
	goleak.VerifyTestMain(m)
}

var dialects = []steadfast.Dialect{steadfast.SQLite, steadfast.Postgres, steadfast.MySQL}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// database is one test's database: its address and a fresh name prefix.
type database struct {
	d      steadfast.Dialect
	dsn    string
	prefix string
}

func newDatabase(t testing.TB, d steadfast.Dialect) database {
	t.Helper()
	var dsn string
	switch d {
	case steadfast.Postgres:
		dsn = testenv.PostgresURL(t)
	case steadfast.MySQL:
		dsn = testenv.MySQLURL(t)
	default:
		dsn = steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "hk.db"))
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	return database{d: d, dsn: dsn, prefix: "hk_" + hex.EncodeToString(b[:])}
}

// open opens a pool of its own, as another process would.
func (db database) open(t testing.TB) *sql.DB {
	t.Helper()
	driver := map[steadfast.Dialect]string{steadfast.Postgres: "pgx", steadfast.MySQL: "mysql", steadfast.SQLite: "sqlite"}[db.d]
	h, err := sql.Open(driver, db.dsn)
	if err != nil {
		t.Fatal(err)
	}
	h.SetMaxOpenConns(4)
	h.SetMaxIdleConns(4)
	t.Cleanup(func() { h.Close() })
	return h
}

// dropLater drops the tables at the end of the test (SQLite's file goes
// with its directory).
func (db database) dropLater(t testing.TB, h *sql.DB, tables ...string) {
	if db.d == steadfast.SQLite {
		return
	}
	t.Cleanup(func() {
		for _, tb := range tables {
			_, _ = h.Exec("DROP TABLE IF EXISTS " + tb)
		}
	})
}

// fakeRows is a store of n expired rows that removes them in batches, and
// counts its calls; gate, when set, is waited on before each batch after
// the first.
type fakeRows struct {
	mu      sync.Mutex
	left    int64
	calls   int
	gate    chan struct{}
	entered chan struct{}
}

func (f *fakeRows) Purge(ctx context.Context, batch int) (int64, error) {
	f.mu.Lock()
	f.calls++
	calls := f.calls
	f.mu.Unlock()
	if f.gate != nil && calls > 1 {
		select {
		case f.entered <- struct{}{}:
		default:
		}
		select {
		case <-f.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(int64(batch), f.left)
	f.left -= n
	return n, nil
}

func (f *fakeRows) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}
