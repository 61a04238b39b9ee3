package sqloutbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/retry"
)

// gone answers every publish with a permanent error, as an endpoint that
// answered 410 Gone would.
type gone struct{ dead chan struct{} }

func (g gone) Publish(ctx context.Context, d outbox.Delivery) error {
	defer close(g.dead)
	return retry.Permanent(errors.New("410 Gone"))
}

// Enqueue in the caller's transaction; a rolled-back transaction leaves
// nothing to deliver, and an invalid message is refused before anything is
// written. A message that cannot be delivered becomes a dead letter, which
// an operator lists and requeues.
func Example() {
	dir, _ := os.MkdirTemp("", "sqloutbox-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, err := sqloutbox.New(db, steadfast.SQLite, sqloutbox.WithTable("events"))
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
	fmt.Println(errors.Is(err, outbox.ErrInvalid), err)
	_ = store.Enqueue(ctx, tx, outbox.Message{Topic: "invoices", Payload: []byte("sent")})
	_ = tx.Commit()

	pub := gone{dead: make(chan struct{})}
	relay, err := outbox.NewRelay(store, pub)
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Start(ctx)
	<-pub.dead
	_ = relay.Stop(ctx) // writes the outcome back

	dead, _ := store.ListDead(ctx, "", 0, 10)
	fmt.Println(len(dead), string(dead[0].Payload), dead[0].LastError)
	n, _ := store.Requeue(ctx, dead[0].ID)
	st, _ := store.Stats(ctx)
	fmt.Println(n, st.Pending, st.Dead)
	// Output:
	// true outbox: message 0: empty topic
	// 1 sent 410 Gone
	// 1 1 0
}

// An event that belongs to no business transaction (a scheduled reminder)
// is enqueued in a transaction of its own.
func ExampleStore_EnqueueWithoutTx() {
	dir, _ := os.MkdirTemp("", "sqloutbox-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if err := store.EnqueueWithoutTx(ctx, outbox.Message{Topic: "reminders", Key: "customer-42", Payload: []byte(`{"due":"tomorrow"}`)}); err != nil {
		log.Fatal(err)
	}
	st, _ := store.Stats(ctx)
	fmt.Println(st.Pending)
	// Output:
	// 1
}

// flaky answers 410 Gone until the endpoint is fixed.
type flaky struct {
	fixed     atomic.Bool
	delivered chan string
}

func (f *flaky) Publish(ctx context.Context, d outbox.Delivery) error {
	if !f.fixed.Load() {
		return outbox.Pause(errors.New("410 Gone"), time.Hour)
	}
	f.delivered <- string(d.Payload)
	return nil
}

// A destination that answers 410 Gone is paused for every relay; once the
// customer fixed the endpoint, an operator lists the pauses and lifts this
// one (outboxctl pauses, outboxctl resume), and the held messages go at
// once, their attempts unspent.
func ExampleStore_Resume() {
	dir, _ := os.MkdirTemp("", "sqloutbox-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	_ = store.EnqueueWithoutTx(ctx, outbox.Message{Topic: "invoices", Destination: "customer-7", Payload: []byte("invoice 1")})

	pub := &flaky{delivered: make(chan string, 1)}
	relay, err := outbox.NewRelay(store, pub, outbox.WithPollInterval(100*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Start(ctx)
	defer relay.Stop(ctx)

	var paused []outbox.PausedDestination
	for len(paused) == 0 {
		time.Sleep(10 * time.Millisecond)
		paused, _ = store.Pauses(ctx)
	}
	fmt.Println(paused[0].Destination, paused[0].Reason, time.Until(paused[0].Until).Round(time.Hour))

	pub.fixed.Store(true)
	n, _ := store.Resume(ctx, "customer-7")
	fmt.Println(n, <-pub.delivered)
	// Output:
	// customer-7 outbox: destination paused: 410 Gone 1h0m0s
	// 1 invoice 1
}
