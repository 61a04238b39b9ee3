package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) {
	// The fault tests make go-sql-driver/mysql log every broken connection;
	// keep the output readable.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	goleak.VerifyTestMain(m)
}

var dialects = []steadfast.Dialect{steadfast.SQLite, steadfast.Postgres, steadfast.MySQL}

// openDB opens a small pool on the test server of dialect d (a file database
// in t.TempDir for SQLite), or skips when the server's variable is unset.
func openDB(t testing.TB, d steadfast.Dialect, conns int) *sql.DB {
	t.Helper()
	var (
		db  *sql.DB
		err error
	)
	switch d {
	case steadfast.SQLite:
		db, err = sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "idem.db")))
	case steadfast.Postgres:
		db, err = sql.Open("pgx", testenv.PostgresURL(t))
	case steadfast.MySQL:
		db, err = sql.Open("mysql", testenv.MySQLURL(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	t.Cleanup(func() { db.Close() })
	return db
}

// uniqueTable returns a table name no other test uses.
func uniqueTable(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t_" + hex.EncodeToString(b[:])
}

// newStore returns a migrated store on its own tables, dropped at the end.
func newStore(t testing.TB, d steadfast.Dialect, conns int, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	db := openDB(t, d, conns)
	return newStoreOn(t, db, d, opts...)
}

func newStoreOn(t testing.TB, db *sql.DB, d steadfast.Dialect, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	table := uniqueTable(t)
	s, err := sqlstore.New(db, d, append([]sqlstore.Option{sqlstore.WithTable(table)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if d != steadfast.SQLite {
		t.Cleanup(func() {
			for _, suffix := range []string{"", "_inbox", "_order"} {
				_, _ = db.Exec("DROP TABLE IF EXISTS " + table + suffix)
			}
			if d == steadfast.Postgres {
				_, _ = db.Exec("DROP FUNCTION IF EXISTS " + table + "_claim")
			}
		})
	}
	return s
}

// forEachDialect runs f as a parallel subtest per dialect.
func forEachDialect(t *testing.T, f func(t *testing.T, d steadfast.Dialect)) {
	t.Helper()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

// mustTx returns the transaction of a transactional request, or panics: the
// tests that call it run under WithTransaction.
func mustTx(ctx context.Context) *sql.Tx {
	tx, err := idempotency.TxFrom(ctx)
	if err != nil {
		panic(err)
	}
	return tx
}
