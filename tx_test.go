package steadfast_test

import (
	"database/sql"
	"testing"

	"github.com/steadfast-go/steadfast"
)

func TestTxRefusesDBAndConn(t *testing.T) {
	t.Parallel()
	var db any = (*sql.DB)(nil)
	var conn any = (*sql.Conn)(nil)
	var tx any = (*sql.Tx)(nil)
	if _, ok := db.(steadfast.Tx); ok {
		t.Fatal("*sql.DB satisfies steadfast.Tx: an enqueue could run outside any transaction")
	}
	if _, ok := conn.(steadfast.Tx); ok {
		t.Fatal("*sql.Conn satisfies steadfast.Tx")
	}
	if _, ok := tx.(steadfast.Tx); !ok {
		t.Fatal("*sql.Tx does not satisfy steadfast.Tx")
	}
}
