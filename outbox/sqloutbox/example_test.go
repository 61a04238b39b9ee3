package sqloutbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// Enqueue in the caller's transaction; a rolled-back transaction leaves
// nothing to deliver. Dead letters can be listed and requeued.
func Example() {
	dir, _ := os.MkdirTemp("", "sqloutbox-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", sqloutbox.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, err := sqloutbox.New(db, sqloutbox.SQLite, sqloutbox.WithTable("events"))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	tx, _ := db.BeginTx(ctx, nil)
	_ = store.Enqueue(ctx, tx, outbox.Message{Topic: "invoices", Payload: []byte("never sent")})
	_ = tx.Rollback()

	tx, _ = db.BeginTx(ctx, nil)
	err = store.Enqueue(ctx, tx, outbox.Message{Topic: "", Payload: []byte("no topic")})
	fmt.Println(errors.Is(err, outbox.ErrInvalidMessage), err)
	_ = store.Enqueue(ctx, tx, outbox.Message{Topic: "invoices", Payload: []byte("sent")})
	_ = tx.Commit()

	claimed, _ := store.Claim(ctx, outbox.ClaimRequest{Limit: 10, Lease: time.Minute})
	fmt.Println(len(claimed), string(claimed[0].Payload))
	_ = store.Settle(ctx, []outbox.Outcome{{Position: claimed[0].Position, Token: claimed[0].Token, Kind: outbox.Dead, LastError: "410 Gone"}})
	dead, _ := store.ListDead(ctx, "", 0, 10)
	fmt.Println(len(dead), dead[0].LastError)
	n, _ := store.Requeue(ctx, dead[0].ID)
	st, _ := store.Stats(ctx)
	fmt.Println(n, st.Pending, st.Dead)
	// Output:
	// true outbox: message 0: empty topic
	// 1 sent
	// 1 410 Gone
	// 1 1 0
}
