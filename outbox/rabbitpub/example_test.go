package rabbitpub_test

import (
	"context"
	"database/sql"
	"log"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/rabbitpub"
)

// The relay publishes to the exchange "events"; each message's topic is its
// routing key.
func Example() {
	ctx := context.Background()
	pub, err := rabbitpub.New(ctx, "amqp://guest:guest@127.0.0.1:5672/", "events")
	if err != nil {
		log.Fatal(err) // unreachable broker or unknown exchange
	}
	defer pub.Close()
	var store outbox.Store // an outbox/sqloutbox store
	relay, err := outbox.NewRelay(store, pub)
	if err != nil {
		log.Fatal(err)
	}
	_ = relay.Run(ctx)
}

// A consumer applies each event once, even when RabbitMQ redelivers it or
// the relay published it twice.
func ExampleConsume() {
	ctx := context.Background()
	var inbox outbox.Inbox // an *sqlstore.Store
	var deliveries <-chan amqp.Delivery
	for d := range deliveries {
		_, err := rabbitpub.Consume(ctx, inbox, "billing", d, func(ctx context.Context, tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO invoices (event_id) VALUES (?)", d.MessageId)
			return err
		})
		if err != nil {
			log.Print(err) // nacked with requeue: delivered again
		}
	}
}
