package rabbitpub_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/internal/testserver"
)

// TestHungBrokerIsNotDelivered: a broker that stops answering holds the
// publish only as long as the caller's context (the relay's publish timeout)
// and never yields a false confirmation; once it answers again, publishing
// goes on.
func TestHungBrokerIsNotDelivered(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := b.bind(t, "orders")
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testserver.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	p := newPublisher(t, u.String(), b.exchange)
	ctx := context.Background()

	proxy.Hang()
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = p.Publish(pctx, delivery("orders"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a hung broker = %v, want the context's deadline", err)
	}
	proxy.Restore()
	var last error
	for i := 0; i < 3; i++ {
		if last = p.Publish(ctx, delivery("orders")); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("publishing did not go on after the broker answered again: %v", last)
	}
	// The hung message reached the broker late (at least once: the relay
	// will publish it again, and consumers deduplicate), the next one too.
	info, err := b.ch.QueueDeclarePassive(q, false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Messages < 1 || info.Messages > 2 {
		t.Errorf("queue holds %d messages, want 1 or 2", info.Messages)
	}
}

// TestExchangeDeletedAfterConstruction: the broker closes the channel of a
// publish to a missing exchange; the publish fails (it is not lost
// silently) and the publisher recovers once the exchange is back.
func TestExchangeDeletedAfterConstruction(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	p := newPublisher(t, b.url, b.exchange)
	ctx := context.Background()
	if err := b.ch.ExchangeDelete(b.exchange, false, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, delivery("orders")); err == nil {
		t.Fatal("Publish to a deleted exchange = nil, want an error")
	}
	if err := b.ch.ExchangeDeclare(b.exchange, "direct", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q := b.bind(t, "orders")
	var last error
	for i := 0; i < 3; i++ {
		if last = p.Publish(ctx, delivery("orders")); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("publishing did not resume once the exchange was back: %v", last)
	}
	if _, ok := b.get(t, q); !ok {
		t.Fatal("queue is empty")
	}
}
