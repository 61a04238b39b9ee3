package extest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Name returns prefix followed by "_" and 8 random hex digits: a lower-case
// SQL identifier (and a valid JetStream stream name) unique to the test.
func Name(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// DropTables drops the PostgreSQL tables named at the end of the test.
func DropTables(t testing.TB, postgresURL string, tables ...string) {
	t.Helper()
	t.Cleanup(func() {
		db, err := sql.Open("pgx", postgresURL)
		if err != nil {
			t.Errorf("drop tables: %v", err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, table := range tables {
			if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
				t.Errorf("drop table %s: %v", table, err)
			}
		}
	})
}
