package sqldb_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type codeErr struct{ code int }

func (e codeErr) Error() string { return fmt.Sprintf("code %d", e.code) }
func (e codeErr) Code() int     { return e.code }

type stateErr string

func (e stateErr) Error() string    { return string(e) }
func (e stateErr) SQLState() string { return string(e) }

func TestIsRetryableClassifiesByType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", errors.New("deadlock found"), false},
		{"mysql deadlock", &mysql.MySQLError{Number: 1213}, true},
		{"mysql lock wait timeout", &mysql.MySQLError{Number: 1205}, true},
		{"mysql duplicate", &mysql.MySQLError{Number: 1062}, false},
		{"wrapped mysql deadlock", fmt.Errorf("claim: %w", &mysql.MySQLError{Number: 1213}), true},
		{"postgres deadlock", stateErr("40P01"), true},
		{"postgres serialization", stateErr("40001"), true},
		{"postgres unique violation", stateErr("23505"), false},
		{"foreign Code() 5 is not SQLite", codeErr{5}, false},
		{"joined", errors.Join(errors.New("x"), &mysql.MySQLError{Number: 1213}), true},
	}
	for _, tt := range tests {
		if got := sqldb.IsRetryable(tt.err); got != tt.want {
			t.Errorf("%s: IsRetryable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRealSQLiteBusy provokes SQLITE_BUSY: a second writer with no busy
// timeout while the first holds the write lock.
func TestRealSQLiteBusy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_journal_mode=WAL&_busy_timeout=0&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = db.Exec("INSERT INTO t VALUES (1)")
	if err == nil {
		t.Fatal("second writer succeeded while the first held the lock")
	}
	if !sqldb.IsSQLiteBusy(err) || !sqldb.IsRetryable(err) {
		t.Fatalf("error %v (%T) not classified as SQLite busy", err, err)
	}
	// Retry waits it out once the lock is gone.
	attempts := 0
	err = sqldb.Retry(context.Background(), sqldb.RetryPolicy{}, func(ctx context.Context) error {
		attempts++
		if attempts == 2 {
			_ = tx.Rollback()
		}
		_, err := db.ExecContext(ctx, "INSERT INTO t VALUES (2)")
		return err
	})
	if err != nil || attempts < 2 {
		t.Fatalf("Retry = %v after %d attempts, want success on the second or later", err, attempts)
	}
}

func uniq(t *testing.T) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "dl_" + hex.EncodeToString(b[:])
}

// TestRealDeadlocks provokes a deadlock on PostgreSQL and MySQL/MariaDB (two
// transactions updating two rows in opposite orders) and checks that the
// error the driver returns is classified retryable.
func TestRealDeadlocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, driver string
		url          func(testing.TB) string
		ph           string
	}{
		{"postgres", "pgx", testenv.PostgresURL, "$1"},
		{"mysql", "mysql", testenv.MySQLURL, "?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, err := sql.Open(tc.driver, tc.url(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(3)
			table := uniq(t)
			if _, err := db.Exec("CREATE TABLE " + table + " (id INT PRIMARY KEY, n INT)"); err != nil {
				t.Fatal(err)
			}
			defer db.Exec("DROP TABLE " + table)
			if _, err := db.Exec("INSERT INTO " + table + " VALUES (1, 0), (2, 0)"); err != nil {
				t.Fatal(err)
			}
			upd := "UPDATE " + table + " SET n = n + 1 WHERE id = " + tc.ph
			ctx := context.Background()
			txs := make([]*sql.Tx, 2)
			for i := range txs {
				if txs[i], err = db.BeginTx(ctx, nil); err != nil {
					t.Fatal(err)
				}
				if _, err := txs[i].Exec(upd, i+1); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range txs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = txs[i].Exec(upd, 2-i)
					if errs[i] != nil {
						_ = txs[i].Rollback()
					} else {
						errs[i] = txs[i].Commit()
					}
				}()
			}
			wg.Wait()
			var dead error
			for _, e := range errs {
				if e != nil {
					dead = e
				}
			}
			if dead == nil {
				t.Fatal("no deadlock")
			}
			if !sqldb.IsRetryable(dead) {
				t.Fatalf("deadlock error %v (%T) not classified retryable", dead, dead)
			}
		})
	}
}

func TestRetryGivesUpClearly(t *testing.T) {
	t.Parallel()
	deadlock := &mysql.MySQLError{Number: 1213}
	n := 0
	err := sqldb.Retry(context.Background(), sqldb.RetryPolicy{Attempts: 3}, func(context.Context) error { n++; return deadlock })
	var ex *sqldb.RetryExhaustedError
	if !errors.As(err, &ex) || ex.Attempts != 3 || n != 3 || !errors.Is(err, deadlock) {
		t.Fatalf("Retry = %v after %d calls; want RetryExhaustedError{3} wrapping the deadlock", err, n)
	}
	n = 0
	other := errors.New("constraint")
	if err := sqldb.Retry(context.Background(), sqldb.RetryPolicy{}, func(context.Context) error { n++; return other }); err != other || n != 1 {
		t.Fatalf("Retry of a permanent error = %v after %d calls; want it at once", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(context.Context) error { return deadlock })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, deadlock) {
		t.Fatalf("Retry with a cancelled context = %v, want both the deadlock and context.Canceled", err)
	}
}

func TestSQLiteDSN(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", sqldb.SQLiteDSN(filepath.Join(t.TempDir(), "x.db"), 0))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for pragma, want := range map[string]string{"journal_mode": "wal", "busy_timeout": "5000", "foreign_keys": "1", "synchronous": "2"} {
		var got string
		if err := db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}
