package rabbitpub_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/rabbitpub"
	"github.com/steadfast-go/steadfast/retry"
)

// TestMalformedMessageIsPermanent: a message that cannot be framed (a
// routing key, message id or header name over AMQP's 255 bytes, headers
// larger than a frame) is refused before anything is sent: permanent, so the
// relay dead-letters it at once, and the connection, which a frame the
// client cannot write would tear down with every publish in flight on it,
// stays up for the next message.
func TestMalformedMessageIsPermanent(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := b.bind(t, "orders")
	var logs bytes.Buffer
	p := newPublisher(t, b.url, b.exchange, rabbitpub.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	long := strings.Repeat("k", 256)
	tests := map[string]func(d *outbox.Delivery){
		"routing key over 255 bytes": func(d *outbox.Delivery) { d.Topic = long },
		"message id over 255 bytes":  func(d *outbox.Delivery) { d.ID = long },
		"header name over 255 bytes": func(d *outbox.Delivery) { d.Headers[long] = "v" },
		"headers larger than a frame": func(d *outbox.Delivery) {
			d.Headers["big"] = strings.Repeat("v", 256<<10)
		},
	}
	for name, spoil := range tests {
		d := delivery("orders")
		spoil(&d)
		err := p.Publish(context.Background(), d)
		if err == nil || !retry.IsPermanent(err) {
			t.Errorf("%s: Publish = %v, want a permanent error", name, err)
		}
	}
	if err := p.Publish(context.Background(), delivery("orders")); err != nil {
		t.Fatalf("a well-formed message after them: %v", err)
	}
	if _, ok := b.get(t, q); !ok {
		t.Fatal("queue is empty")
	}
	if strings.Contains(logs.String(), "connected again") {
		t.Errorf("the publisher had to reconnect: a malformed message broke the connection:\n%s", logs.String())
	}
}

// TestMessageOverBrokerMaxSizeIsPermanent: RabbitMQ refuses a message over
// its max_message_size (128 MiB by default in 3.x) by closing the channel
// with 406 PRECONDITION_FAILED. That message is permanent; it is not
// retried forever, closing the channel for everyone each time.
func TestMessageOverBrokerMaxSizeIsPermanent(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	b.bind(t, "orders")
	p := newPublisher(t, b.url, b.exchange)
	d := delivery("orders")
	d.Payload = make([]byte, 128<<20+1)
	err := p.Publish(context.Background(), d)
	if err == nil || !retry.IsPermanent(err) {
		t.Fatalf("Publish over the broker's max message size = %v, want a permanent error", err)
	}
	if err := p.Publish(context.Background(), delivery("orders")); err != nil {
		t.Fatalf("a message after it: %v", err)
	}
}
