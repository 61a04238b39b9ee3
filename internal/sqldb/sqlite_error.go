package sqldb

import "reflect"

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
