package sqldb

import (
	"errors"
	"reflect"
)

// isSQLiteError reports whether err's dynamic type is the Error type of
// modernc.org/sqlite (*sqlite.Error), so that a Code() int method of some
// other driver is not mistaken for an SQLite result code.
func isSQLiteError(err error) bool {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() == "modernc.org/sqlite" && t.Name() == "Error"
}

// sqliteCode returns the (extended) result code of the first
// modernc.org/sqlite error in err's tree.
func sqliteCode(err error) (int, bool) {
	var se interface {
		error
		Code() int
	}
	if !errors.As(err, &se) || !isSQLiteError(se) {
		return 0, false
	}
	return se.Code(), true
}
