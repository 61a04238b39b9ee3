package natspub_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/internal/testserver"
	"github.com/steadfast-go/steadfast/outbox"
)

// TestChaosPublishAcrossServerRestart kills the NATS server of the test's own
// under the publisher: while it is down no publish is reported delivered;
// once it is back publishing resumes on the same connection, and each
// message is in the stream once, including those whose publish failed and
// was retried (as the relay retries them) while the client flushed its
// buffered requests after reconnecting.
func TestChaosPublishAcrossServerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a server: runs once without -race in .ci/run (Chaos)")
	}
	t.Parallel()
	srv := testserver.StartNATS(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, js, "ORDERS")

	// publish retries d as the relay would, until it is confirmed.
	publish := func(d outbox.Delivery) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := p.Publish(pctx, d)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("publish %s: %v", d.ID, err)
			}
			d.Attempt++
		}
	}
	before := delivery("orders.new")
	publish(before)

	srv.Kill(t)
	during := delivery("orders.new")
	for i := 0; i < 3; i++ {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := p.Publish(pctx, during)
		cancel()
		if err == nil {
			t.Fatalf("publish %d while the server is down = nil, want an error", i)
		}
	}

	srv.Start(t)
	publish(during)
	after := delivery("orders.new")
	publish(after)

	s, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages, want 3 (each once)", info.State.Msgs)
	}
	seen := map[string]int{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // a sequence may be a gap
		}
		seen[m.Header.Get(jetstream.MsgIDHeader)]++
	}
	for _, d := range []outbox.Delivery{before, during, after} {
		if seen[d.ID] != 1 {
			t.Errorf("message %s stored %d times, want 1", d.ID, seen[d.ID])
		}
	}
}
