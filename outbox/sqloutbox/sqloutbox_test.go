package sqloutbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// The shared pools live for the whole run.
	if pgDB != nil {
		pgDB.Close()
	}
	if myDB != nil {
		myDB.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type sqlTx struct {
	tx *sql.Tx
	s  *sqloutbox.Store
}

func (t sqlTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return t.s.Enqueue(ctx, t.tx, msgs...)
}
func (t sqlTx) Commit() error   { return t.tx.Commit() }
func (t sqlTx) Rollback() error { return t.tx.Rollback() }

func harness(t *testing.T, db *sql.DB, s *sqloutbox.Store) outboxtest.Harness {
	return outboxtest.Harness{
		Store: s,
		Begin: func(ctx context.Context) (outboxtest.Tx, error) {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return nil, err
			}
			return sqlTx{tx: tx, s: s}, nil
		},
		Corrupt: func(ctx context.Context, id string, headers map[string]string) error {
			return corrupt(ctx, db, s, id, headers)
		},
		SingleWriter:     s.Dialect() == steadfast.SQLite,
		DeletesDelivered: true, // the tests of WithKeepDelivered set it back
	}
}

// corrupt writes the headers of message id behind the store's back: the
// JSON of headers, or text that is not JSON when headers is nil.
func corrupt(ctx context.Context, db *sql.DB, s *sqloutbox.Store, id string, headers map[string]string) error {
	raw := "not json"
	if headers != nil {
		b, err := json.Marshal(headers)
		if err != nil {
			return err
		}
		raw = string(b)
	}
	q := "UPDATE " + s.Table() + " SET headers = ? WHERE id = ?"
	if s.Dialect() == steadfast.Postgres {
		q = "UPDATE " + s.Table() + " SET headers = $1 WHERE id = $2"
	}
	_, err := db.ExecContext(ctx, q, raw, id)
	return err
}

var (
	pgOnce sync.Once
	pgDB   *sql.DB
	pgErr  error
	myOnce sync.Once
	myDB   *sql.DB
	myErr  error
)

// postgresDB returns the shared pool on TEST_POSTGRES_URL (small: the
// server allows 100 connections to everybody).
func postgresDB(t testing.TB) (*sql.DB, string) {
	url := testenv.PostgresURL(t)
	pgOnce.Do(func() {
		pgDB, pgErr = sql.Open("pgx", url)
		if pgErr == nil {
			pgDB.SetMaxOpenConns(12)
			pgDB.SetMaxIdleConns(12)
		}
	})
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pgDB, url
}

func mysqlDB(t testing.TB) *sql.DB {
	url := testenv.MySQLURL(t)
	myOnce.Do(func() {
		myDB, myErr = sql.Open("mysql", url)
		if myErr == nil {
			myDB.SetMaxOpenConns(12)
			myDB.SetMaxIdleConns(12)
		}
	})
	if myErr != nil {
		t.Fatal(myErr)
	}
	return myDB
}

func tableName() string { return fmt.Sprintf("obx_%x", rand.Uint64()) }

// newPostgres makes a store on a table of its own, dropped at the end.
func newPostgres(t testing.TB, opts ...sqloutbox.Option) (*sql.DB, *sqloutbox.Store, string) {
	db, url := postgresDB(t)
	table := tableName()
	s, err := sqloutbox.New(db, steadfast.Postgres, append([]sqloutbox.Option{sqloutbox.WithTable(table)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + table) })
	return db, s, url
}

func newSQLite(t testing.TB, opts ...sqloutbox.Option) (*sql.DB, *sqloutbox.Store) {
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqloutbox.New(db, steadfast.SQLite, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, s
}

func newMySQL(t testing.TB, opts ...sqloutbox.Option) (*sql.DB, *sqloutbox.Store) {
	db := mysqlDB(t)
	table := tableName()
	s, err := sqloutbox.New(db, steadfast.MySQL, append([]sqloutbox.Option{sqloutbox.WithTable(table)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + table)
		_, _ = db.Exec("DROP TABLE IF EXISTS " + table + "_keys")
	})
	return db, s
}

func TestPostgresConformance(t *testing.T) {
	postgresDB(t)
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, s, _ := newPostgres(t)
		h := harness(t, db, s)
		l, err := pgxoutbox.NewListener(s, db)
		if err != nil {
			t.Fatal(err)
		}
		h.RelayOptions = []outbox.Option{outbox.WithNotifier(l)}
		return h
	})
}

// TestPostgresDurableConformance runs the suite with synchronous
// write-backs (the claim and settle statements differ: no set_config CTE)
// and delivered messages kept (the settle updates them instead of deleting
// them).
func TestPostgresDurableConformance(t *testing.T) {
	postgresDB(t)
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, s, _ := newPostgres(t, sqloutbox.WithDurableWriteBacks(), sqloutbox.WithKeepDelivered())
		h := harness(t, db, s)
		h.DeletesDelivered = false
		return h
	})
}

func TestSQLiteConformance(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, s := newSQLite(t)
		return harness(t, db, s)
	})
}

// TestSQLiteKeepDeliveredConformance runs the suite on a store that keeps
// delivered messages.
func TestSQLiteKeepDeliveredConformance(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, s := newSQLite(t, sqloutbox.WithKeepDelivered())
		h := harness(t, db, s)
		h.DeletesDelivered = false
		return h
	})
}

func TestMySQLConformance(t *testing.T) {
	mysqlDB(t)
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, s := newMySQL(t)
		return harness(t, db, s)
	})
}

// TestMySQLKeepDeliveredConformance runs the suite on a store that keeps
// delivered messages.
func TestMySQLKeepDeliveredConformance(t *testing.T) {
	mysqlDB(t)
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, s := newMySQL(t, sqloutbox.WithKeepDelivered())
		h := harness(t, db, s)
		h.DeletesDelivered = false
		return h
	})
}
