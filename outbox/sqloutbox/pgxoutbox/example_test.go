package pgxoutbox_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
)

// A program on pgxpool writes the order and its event in one pgx
// transaction; its relay, on a database/sql view of the same pool, is woken
// by LISTEN/NOTIFY.
func Example() {
	ctx := context.Background()
	url := "postgres://localhost/shop"
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	store, err := sqloutbox.New(db, steadfast.Postgres)
	if err != nil {
		log.Fatal(err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'paid' WHERE id = $1`, "o-1"); err != nil {
		log.Fatal(err)
	}
	if err := pgxoutbox.Enqueue(ctx, store, tx, outbox.Message{Topic: "orders", Key: "o-1", Payload: []byte(`{"status":"paid"}`)}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}

	listener, err := pgxoutbox.NewListener(store, db) // one DSN: the listener connects as db does
	if err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.NewRelay(store, publisher, outbox.WithNotifier(listener))
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx) // until ctx ends
}

var publisher outbox.Publisher
