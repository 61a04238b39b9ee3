package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestParseTable(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("t", 63)
	for _, tt := range []struct {
		name, schema, table string
		suffixes            []string
		bad                 bool
	}{
		{name: "steadfast_idempotency", table: "steadfast_idempotency"},
		{name: "app.events", schema: "app", table: "events"},
		{name: "App_2.Events_1", schema: "App_2", table: "Events_1"},
		{name: long, table: long},
		{name: long + "t", bad: true},
		{name: long, suffixes: []string{"_inbox"}, bad: true},
		{name: long[:57], suffixes: []string{"_x", "_inbox"}, table: long[:57]},
		{name: "", bad: true},
		{name: ".t", bad: true},
		{name: "s.", bad: true},
		{name: "a.b.c", bad: true},
		{name: "1t", bad: true},
		{name: "t-1", bad: true},
		{name: "t; DROP TABLE x", bad: true},
		{name: `"quoted"`, bad: true},
		{name: "tablé", bad: true},
	} {
		got, err := sqldb.ParseTable(tt.name, tt.suffixes...)
		if tt.bad {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.name)) {
				t.Errorf("ParseTable(%q) = %+v, %v; want an error naming it", tt.name, got, err)
			}
			continue
		}
		if err != nil || got.Schema != tt.schema || got.Name != tt.table {
			t.Errorf("ParseTable(%q) = %+v, %v; want schema %q name %q", tt.name, got, err, tt.schema, tt.table)
		}
		if got.String() != tt.name {
			t.Errorf("ParseTable(%q).String() = %q", tt.name, got.String())
		}
	}
	tb, _ := sqldb.ParseTable("app.events")
	if tb.Qualified("_inbox") != "app.events_inbox" || tb.SchemaPrefix() != "app." {
		t.Errorf("Qualified/SchemaPrefix = %q, %q", tb.Qualified("_inbox"), tb.SchemaPrefix())
	}
}

// The MySQL classification reads go-sql-driver's error by reflection: the
// driver's own type, wrapped or joined, is recognised; a look-alike type
// from another package is not.
func TestMySQLErrorByReflection(t *testing.T) {
	t.Parallel()
	type MySQLError struct{ Number uint16 } // same name and field, other package
	for _, tt := range []struct {
		name                     string
		err                      error
		retryable, aborted, lock bool
	}{
		{"deadlock", &mysql.MySQLError{Number: 1213}, true, true, false},
		{"lock wait timeout", &mysql.MySQLError{Number: 1205}, true, false, true},
		{"savepoint gone", &mysql.MySQLError{Number: 1305}, false, true, false},
		{"duplicate", &mysql.MySQLError{Number: 1062}, false, false, false},
		{"wrapped", fmt.Errorf("claim: %w", &mysql.MySQLError{Number: 1213}), true, true, false},
		{"joined", errors.Join(errors.New("x"), &mysql.MySQLError{Number: 1205}), true, false, true},
		{"look-alike", fmt.Errorf("%v", &MySQLError{Number: 1213}), false, false, false},
		{"nil pointer", (*mysql.MySQLError)(nil), false, false, false},
	} {
		if got := sqldb.IsRetryable(tt.err); got != tt.retryable {
			t.Errorf("%s: IsRetryable = %v, want %v", tt.name, got, tt.retryable)
		}
		if got := sqldb.IsTxAborted(tt.err); got != tt.aborted {
			t.Errorf("%s: IsTxAborted = %v, want %v", tt.name, got, tt.aborted)
		}
		if got := sqldb.IsLockTimeout(tt.err); got != tt.lock {
			t.Errorf("%s: IsLockTimeout = %v, want %v", tt.name, got, tt.lock)
		}
	}
}

// Real errors from the real drivers: an aborted PostgreSQL transaction
// (25P02), a lock wait that ran out on both servers, a savepoint MariaDB no
// longer has.
func TestRealAbortAndLockErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db := open(t, "pgx", testenv.PostgresURL(t))
		table := newTable(t, db)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.Exec("INSERT INTO " + table + " VALUES (1, 0)"); err == nil {
			t.Fatal("duplicate insert succeeded")
		}
		_, err = tx.Exec("SELECT 1")
		if !sqldb.IsTxAborted(err) || sqldb.IsRetryable(err) {
			t.Fatalf("statement in an aborted transaction: %v (%T); want IsTxAborted and not retryable", err, err)
		}
		lockWait(t, db, table, "SET LOCAL lock_timeout = '10ms'", "UPDATE "+table+" SET n = 1 WHERE id = 1")
	})
	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		db := open(t, "mysql", testenv.MySQLURL(t))
		table := newTable(t, db)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		_, err = tx.Exec("ROLLBACK TO SAVEPOINT never_taken")
		if !sqldb.IsTxAborted(err) {
			t.Fatalf("rollback to a missing savepoint: %v (%T); want IsTxAborted", err, err)
		}
		lockWait(t, db, table, "SET innodb_lock_wait_timeout = 1", "UPDATE "+table+" SET n = 1 WHERE id = 1")
	})
}

func open(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(3)
	return db
}

func newTable(t *testing.T, db *sql.DB) string {
	t.Helper()
	table := uniq(t)
	if _, err := db.Exec("CREATE TABLE " + table + " (id INT PRIMARY KEY, n INT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE " + table) })
	if _, err := db.Exec("INSERT INTO " + table + " VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	return table
}

// lockWait holds the row of id 1 in one transaction and updates it in
// another under a bounded lock wait (set by setup); the error must be a
// lock timeout.
func lockWait(t *testing.T, db *sql.DB, table, setup, update string) {
	t.Helper()
	ctx := context.Background()
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.Exec("UPDATE " + table + " SET n = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	waiter, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Rollback()
	if _, err := waiter.Exec(setup); err != nil {
		t.Fatal(err)
	}
	_, err = waiter.Exec(update)
	if !sqldb.IsLockTimeout(err) {
		t.Fatalf("update of a locked row under a bounded wait: %v (%T); want IsLockTimeout", err, err)
	}
}

// TestWaitedOnRow: a PostgreSQL lock timeout tells a wait on a row (held
// by an update, or a key inserted by a transaction still open) from one on
// a table's lock, which a new key's insert can also wait for (the table's
// extension lock on a loaded server).
func TestWaitedOnRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := open(t, "pgx", testenv.PostgresURL(t))
	table := newTable(t, db)
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.Exec("UPDATE " + table + " SET n = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec("INSERT INTO " + table + " VALUES (2, 0)"); err != nil {
		t.Fatal(err)
	}
	wait := func(stmt string) error {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.Exec("SET LOCAL lock_timeout = '10ms'"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(stmt)
		if !sqldb.IsLockTimeout(err) {
			t.Fatalf("%s: %v; want a lock timeout", stmt, err)
		}
		return err
	}
	for _, stmt := range []string{
		"UPDATE " + table + " SET n = 3 WHERE id = 1",
		"INSERT INTO " + table + " VALUES (2, 1) ON CONFLICT DO NOTHING",
		"SELECT 1 FROM " + table + " WHERE id = 1 FOR UPDATE",
	} {
		if onRow, ok := sqldb.WaitedOnRow(wait(stmt)); !onRow || !ok {
			t.Errorf("%s: WaitedOnRow = %v, %v; want a wait on a row", stmt, onRow, ok)
		}
	}
	if _, err := holder.Exec("LOCK TABLE " + table + " IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	if onRow, ok := sqldb.WaitedOnRow(wait("INSERT INTO " + table + " VALUES (3, 0)")); onRow || !ok {
		t.Errorf("an insert waiting for the table's lock: WaitedOnRow = %v, %v; want a wait on another lock", onRow, ok)
	}
	if _, ok := sqldb.WaitedOnRow(errors.New("not a database error")); ok {
		t.Error("WaitedOnRow knows a plain error")
	}
}
