package natspub_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/natspub"
)

// The relay publishes to the stream ORDERS; the stream deduplicates
// redeliveries for longer than the relay takes to redeliver.
func Example() {
	ctx := context.Background()
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	_, _ = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "ORDERS", Subjects: []string{"orders.>"}, Duplicates: 10 * time.Minute,
	})
	pub, err := natspub.New(ctx, js, "ORDERS", natspub.WithMaxRedeliveryDelay(5*time.Minute))
	if err != nil {
		log.Fatal(err) // unknown stream, or a duplicate window too short
	}
	var store outbox.Store // an outbox/sqloutbox store
	relay, err := outbox.NewRelay(store, pub, outbox.WithBackoff(time.Second, 5*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx)
}

// A consumer applies each order once, even when JetStream redelivers it.
func ExampleConsume() {
	ctx := context.Background()
	var inbox outbox.Inbox // an *sqlstore.Store
	var cons jetstream.Consumer
	_, _ = cons.Consume(func(msg jetstream.Msg) {
		_, err := natspub.Consume(ctx, inbox, "billing", msg, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - 1")
			return err
		})
		if err != nil {
			log.Print(err) // nak'ed: JetStream redelivers it
		}
	})
}
