package rabbitpub_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
)

// BenchmarkThroughput compares the relay delivering through the publisher
// with amqp091-go publishing the same messages (mandatory, persistent, on a
// confirming channel, waiting for each confirmation) directly.
func BenchmarkThroughput(b *testing.B) {
	br := newBroker(b)
	// A bounded queue receives everything, so the broker does not fill up.
	q, err := br.ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-max-length": 1000})
	if err != nil {
		b.Fatal(err)
	}
	if err := br.ch.QueueBind(q.Name, "bench", br.exchange, false, nil); err != nil {
		b.Fatal(err)
	}
	pub := newPublisher(b, br.url, br.exchange)

	conn, err := amqp.Dial(br.url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	pubtest.Throughput(b, pub,
		func(int) outbox.Message { return outbox.Message{Topic: "bench", Payload: payload} },
		func(ctx context.Context, _ int) error {
			id, _ := uuid.NewV7()
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, br.exchange, "bench", true, false,
				amqp.Publishing{MessageId: id.String(), DeliveryMode: amqp.Persistent, Body: payload})
			if err != nil {
				return err
			}
			if ok, err := dc.WaitContext(ctx); err != nil || !ok {
				return errors.Join(err, errors.New("not confirmed"))
			}
			return nil
		})
}
