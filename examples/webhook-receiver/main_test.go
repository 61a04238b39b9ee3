package main

import (
	"bytes"
	"context"
	"maps"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/examples/internal/extest"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs the demo against PostgreSQL: 8 deliveries of 3 events, with
// duplicates, a reordering, a resend and a forgery, leave exactly one effect
// for each event applied, and the order in its latest status.
func TestSmoke(t *testing.T) {
	url := testenv.PostgresURL(t)
	prefix := extest.Name("ex_wh")
	extest.DropTables(t, url, prefix+"_orders", prefix+"_order_events",
		prefix+"_webhooks", prefix+"_webhooks_inbox", prefix+"_webhooks_order")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	got, err := run(ctx, config{postgres: url, prefix: prefix}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Deliveries != 8 || got.Replayed != 3 || got.Statuses[401] != 1 {
		t.Errorf("deliveries %d, replayed %d, refused %d; want 8, 3, 1", got.Deliveries, got.Replayed, got.Statuses[401])
	}
	if want := map[string]int{"applied": 2, "stale": 1, "duplicate": 1}; !maps.Equal(got.Results, want) {
		t.Errorf("handler results %v, want %v", got.Results, want)
	}
	if len(got.Effects) != 2 {
		t.Errorf("effects %v, want the authorized and settled events", got.Effects)
	}
	for id, n := range got.Effects {
		if n != 1 {
			t.Errorf("event %s applied %d times, want 1", id, n)
		}
	}
	if got.Status != "payment.settled" {
		t.Errorf("order status %q, want payment.settled (the captured event came late)", got.Status)
	}
}
