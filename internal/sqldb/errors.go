package sqldb

import (
	"errors"
	"reflect"
	"strings"
)

// The database errors the SQL backends tell apart, recognised without
// importing any driver: by the methods their types have (pgx's
// SQLState() string, modernc.org/sqlite's Code() int), or, for
// go-sql-driver/mysql, whose *MySQLError has only fields, by reflection on
// the type's package path, name and Number field.

// driverField returns the field of the first error in err's tree that is a
// pointer to the struct pkgPath.typeName, when that field has kind k: the
// drivers' error types, read without importing the drivers.
func driverField(err error, pkgPath, typeName, field string, k reflect.Kind) (reflect.Value, bool) {
	var f reflect.Value
	found := walk(err, func(e error) bool {
		v := reflect.ValueOf(e)
		if v.Kind() != reflect.Pointer || v.IsNil() {
			return false
		}
		v = v.Elem()
		t := v.Type()
		if t.Kind() != reflect.Struct || t.PkgPath() != pkgPath || t.Name() != typeName {
			return false
		}
		f = v.FieldByName(field)
		return f.IsValid() && f.Kind() == k
	})
	return f, found
}

// mysqlNumber returns the error number of the first
// *github.com/go-sql-driver/mysql.MySQLError in err's tree.
func mysqlNumber(err error) (uint16, bool) {
	f, ok := driverField(err, "github.com/go-sql-driver/mysql", "MySQLError", "Number", reflect.Uint16)
	if !ok {
		return 0, false
	}
	return uint16(f.Uint()), true
}

// sqlState returns the SQLSTATE of the first error in err's tree that has
// one (pgx's *pgconn.PgError).
func sqlState(err error) (string, bool) {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState(), true
	}
	return "", false
}

// walk calls match on every error of err's tree, depth first, until it
// returns true.
func walk(err error, match func(error) bool) bool {
	for err != nil {
		if match(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, match) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// IsTxAborted reports whether err says that the transaction it happened in
// is gone or unusable, so that nothing more can be written or committed in
// it: PostgreSQL's 25P02 (in failed SQL transaction) and 40P01/40001
// (deadlock, serialization failure, which abort it), MySQL/MariaDB's 1213
// (deadlock: InnoDB rolled the transaction back) and 1305 (savepoint does
// not exist: rolled back with it), and an SQLite error after which SQLite
// rolled the transaction back on its own (SQLITE_FULL, SQLITE_IOERR,
// SQLITE_NOMEM, SQLITE_BUSY and SQLITE_INTERRUPT with their extended
// codes).
func IsTxAborted(err error) bool {
	if err == nil {
		return false
	}
	if n, ok := mysqlNumber(err); ok {
		return n == 1213 || n == 1305
	}
	if st, ok := sqlState(err); ok {
		switch st {
		case "25P02", "40P01", "40001":
			return true
		}
		return false
	}
	if code, ok := sqliteCode(err); ok {
		switch code & 0xff {
		case 13, 10, 7, 5, 9: // FULL, IOERR, NOMEM, BUSY, INTERRUPT
			return true
		}
	}
	return false
}

// IsLockTimeout reports whether err is a bounded lock wait that ran out:
// PostgreSQL's 55P03 (lock_not_available, from lock_timeout or NOWAIT) or
// MySQL/MariaDB's 1205 (lock wait timeout exceeded).
func IsLockTimeout(err error) bool {
	if err == nil {
		return false
	}
	if n, ok := mysqlNumber(err); ok {
		return n == 1205
	}
	st, ok := sqlState(err)
	return ok && st == "55P03"
}

// WaitedOnRow reports, for a PostgreSQL lock timeout (55P03), whether the
// lock the statement waited for was a row's, or the transaction that wrote
// it (the error's context says "while inserting index tuple", "while
// locking tuple", "while updating tuple"...), and not a table's or its
// extension's, whose context says no such thing. ok is false when err
// carries no PostgreSQL error (the field is pgx's PgError.Where, read by
// reflection: sqldb imports no driver).
func WaitedOnRow(err error) (onRow, ok bool) {
	f, ok := driverField(err, "github.com/jackc/pgx/v5/pgconn", "PgError", "Where", reflect.String)
	if !ok {
		return false, false
	}
	return strings.Contains(f.String(), " tuple "), true
}
