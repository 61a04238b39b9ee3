package kafkapub_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/kafkapub"
)

func Example() {
	// An in-process fake cluster stands in for Kafka here.
	cluster, err := kfake.NewCluster(kfake.SeedTopics(3, "orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()

	ctx := context.Background()
	pub, err := kafkapub.New(ctx, cluster.ListenAddrs(), kafkapub.WithTopics("orders"))
	if err != nil {
		log.Fatal(err) // unreachable cluster or unknown topic
	}
	defer pub.Close()

	// The relay (outbox.NewRelay(store, pub)) calls Publish for each attempt.
	err = pub.Publish(ctx, outbox.Delivery{Message: outbox.Message{
		ID: "0190f5e2-7b4c-7000-8000-0000000000aa", Topic: "orders", Key: "customer-7", Payload: []byte(`{"total":42}`),
	}, Attempt: 1})
	fmt.Println("acknowledged:", err == nil)
	// Output: acknowledged: true
}

// A consumer applies each record once, and commits its offset only after.
func ExampleConsume() {
	ctx := context.Background()
	var inbox outbox.Inbox // an *sqlstore.Store
	var client *kgo.Client // made with kgo.DisableAutoCommit()
	for {
		fetches := client.PollFetches(ctx)
		for _, rec := range fetches.Records() {
			_, err := kafkapub.Consume(ctx, inbox, "billing", rec, func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO shipments (order_id) VALUES ($1)", string(rec.Key))
				return err
			})
			if err != nil {
				log.Print(err) // do not commit past it; process it again
				return
			}
			if err := client.CommitRecords(ctx, rec); err != nil {
				log.Print(err)
			}
		}
	}
}
