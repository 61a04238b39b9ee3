// Command sqliteonly uses every SQL backend on SQLite alone.
package main

import (
	"context"
	"database/sql"

	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

func main() {
	db, err := sql.Open("sqlite", "file:demo.db")
	if err != nil {
		panic(err)
	}
	store, err := sqlstore.New(db, steadfast.SQLite)
	if err != nil {
		panic(err)
	}
	if _, err := idempotency.Middleware(store, idempotency.WithTransaction()); err != nil {
		panic(err)
	}
	out, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		panic(err)
	}
	_, _ = outbox.NewRelay(out, nil)
	_ = out.Migrate(context.Background())
}
