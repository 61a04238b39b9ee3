package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/examples/internal/extest"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs the example against PostgreSQL and NATS: every committed
// order is shipped once, in per-customer order; the rolled-back order and the
// republished message leave no extra message in the stream; and the
// consumer's redelivery after its crash is skipped; nothing is left pending.
func TestSmoke(t *testing.T) {
	pgURL, natsURL := testenv.PostgresURL(t), testenv.NATSURL(t)
	prefix := extest.Name("ex_onats")
	extest.DropTables(t, pgURL, prefix+"_orders", prefix+"_outbox", prefix+"_shipments",
		prefix+"_shipping", prefix+"_shipping_inbox", prefix+"_shipping_order")
	stream := strings.ToUpper(prefix)
	t.Cleanup(func() { deleteStream(t, natsURL, stream) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	cfg := config{postgres: pgURL, nats: natsURL, prefix: prefix, stream: stream, subject: prefix, orders: 12}
	got, err := run(ctx, cfg, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	want := summary{Placed: 12, Shipped: 12, Duplicates: 1, StreamMsgs: 12, OrderBroken: 0, Pending: 0, Dead: 0}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func deleteStream(t *testing.T, url, stream string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Errorf("delete stream: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Errorf("delete stream: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, stream); err != nil {
		t.Errorf("delete stream %s: %v", stream, err)
	}
}
