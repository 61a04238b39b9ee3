package pgxoutbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sqlDB != nil {
		sqlDB.Close()
	}
	if pool != nil {
		pool.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	once  sync.Once
	sqlDB *sql.DB
	pool  *pgxpool.Pool
	err   error
)

// servers returns the shared database/sql pool (the store's) and pgx pool
// (the application's) on TEST_POSTGRES_URL.
func servers(t testing.TB) (*sql.DB, *pgxpool.Pool, string) {
	url := testenv.PostgresURL(t)
	once.Do(func() {
		if sqlDB, err = sql.Open("pgx", url); err != nil {
			return
		}
		sqlDB.SetMaxOpenConns(8)
		cfg, perr := pgxpool.ParseConfig(url)
		if perr != nil {
			err = perr
			return
		}
		cfg.MaxConns = 8
		pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	if err != nil {
		t.Fatal(err)
	}
	return sqlDB, pool, url
}

func newStore(t testing.TB, db *sql.DB) *sqloutbox.Store {
	table := fmt.Sprintf("pgxobx_%x", rand.Uint64())
	s, err := sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + table) })
	return s
}

type pgxTx struct {
	tx pgx.Tx
	s  *sqloutbox.Store
}

func (t pgxTx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return pgxoutbox.Enqueue(ctx, t.s, t.tx, msgs...)
}
func (t pgxTx) Commit() error   { return t.tx.Commit(context.Background()) }
func (t pgxTx) Rollback() error { return t.tx.Rollback(context.Background()) }

// TestConformance runs the whole suite with every message enqueued through
// pgx transactions and every relay woken by a Listener.
func TestConformance(t *testing.T) {
	servers(t)
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		db, pool, _ := servers(t)
		s := newStore(t, db)
		l, err := pgxoutbox.NewListener(s, db)
		if err != nil {
			t.Fatal(err)
		}
		return outboxtest.Harness{
			Store: s,
			Begin: func(ctx context.Context) (outboxtest.Tx, error) {
				tx, err := pool.Begin(ctx)
				if err != nil {
					return nil, err
				}
				return pgxTx{tx: tx, s: s}, nil
			},
			Corrupt: func(ctx context.Context, id string, headers map[string]string) error {
				raw := "not json"
				if headers != nil {
					b, _ := json.Marshal(headers)
					raw = string(b)
				}
				_, err := db.ExecContext(ctx, "UPDATE "+s.Table()+" SET headers = $1 WHERE id = $2", raw, id)
				return err
			},
			RelayOptions:     []outbox.Option{outbox.WithNotifier(l)},
			DeletesDelivered: true,
		}
	})
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "o.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lite, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := sqloutbox.New(db, steadfast.Postgres) // never used against the database
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"Enqueue nil store", pgxoutbox.Enqueue(ctx, nil, nil), "pgxoutbox: Enqueue: store is nil"},
		{"Enqueue nil tx", pgxoutbox.Enqueue(ctx, pg, nil), "pgxoutbox: Enqueue: transaction is nil"},
		{"Enqueue on SQLite", pgxoutbox.Enqueue(ctx, lite, nil), "pgxoutbox: Enqueue: the store's dialect is sqlite, not postgres"},
		{"NewListener nil store", second(pgxoutbox.NewListener(nil, db)), "store is nil"},
		{"NewListener nil db", second(pgxoutbox.NewListener(pg, nil)), "pgxoutbox: NewListener: db is nil"},
		{"NewListener on SQLite", second(pgxoutbox.NewListener(lite, db)), "dialect is sqlite, not postgres"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s = %v, want an error with %q", c.name, c.err, c.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestListenerNeedsPgxDatabase: a listener whose database is not opened with
// pgx's database/sql driver says so when it listens, instead of connecting
// somewhere else.
func TestListenerNeedsPgxDatabase(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "o.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pg, err := sqloutbox.New(db, steadfast.Postgres) // never used against the database
	if err != nil {
		t.Fatal(err)
	}
	l, err := pgxoutbox.NewListener(pg, db)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Listen(context.Background(), func() {})
	if err == nil || !strings.Contains(err.Error(), "not opened with pgx's database/sql driver") {
		t.Fatalf("Listen on a SQLite database: %v, want an error naming pgx's driver", err)
	}
}
