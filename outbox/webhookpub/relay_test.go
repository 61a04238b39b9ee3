package webhookpub_test

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/webhook"
)

// The relay tests run in a testing/synctest bubble, over an outbox in
// memory, so that backoffs, Retry-After delays and pauses of minutes pass on
// the bubble's fake clock. The test endpoints serve outside the bubble; the
// publisher, made inside it, keeps no idle connection (an idle connection's
// reader waits on the network, and the bubble's clock would never move).

// inBubble runs f in a bubble with an outbox in memory.
func inBubble(t *testing.T, f func(t *testing.T, ob *pubtest.Outbox)) {
	synctest.Test(t, func(t *testing.T) { f(t, pubtest.NewMemOutbox(t)) })
}

// bubbled makes p fit a bubble.
func bubbled(p *webhookpub.Publisher) *webhookpub.Publisher {
	webhookpub.NoKeepAlives(p)
	return p
}

// stampGap is the time between the webhook-timestamps of two requests.
func stampGap(t *testing.T, a, b request) time.Duration {
	t.Helper()
	ta, err1 := strconv.ParseInt(a.header.Get("webhook-timestamp"), 10, 64)
	tb, err2 := strconv.ParseInt(b.header.Get("webhook-timestamp"), 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad timestamps: %v %v", err1, err2)
	}
	return time.Duration(tb-ta) * time.Second
}

const msgID = "0190f5e2-7b4c-7000-8000-00000000a001"

func TestRelayRetriesWithTheSameWebhookID(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(503), status(503), status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		pub := bubbled(newPublisher(t, ep.srv.URL))
		ob.Enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{"invoice":1}`)})
		pubtest.StartRelay(t, ob.Store, pub, outbox.WithBackoff(time.Second, 10*time.Second))

		for attempt := 1; attempt <= 2; attempt++ {
			pubtest.Until(t, "a failed attempt written back", 0, func() bool {
				r := ob.Record(t, msgID)
				return r.Attempts == attempt && r.State == outbox.StatePending && r.LastError != ""
			})
			pubtest.Until(t, "the next attempt", time.Second, func() bool { return len(ep.seen()) > attempt })
		}
		pubtest.Until(t, "delivery", 0, func() bool { return ob.Record(t, msgID).State == outbox.StateDelivered })

		seen := ep.seen()
		if len(seen) != 3 {
			t.Fatalf("endpoint saw %d attempts, want 3", len(seen))
		}
		v, err := webhook.NewVerifier([]string{secret}, webhook.WithTolerance(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		stamps := map[string]bool{}
		for i, r := range seen {
			if got := r.header.Get("webhook-id"); got != msgID {
				t.Errorf("attempt %d: webhook-id %q, want %q", i+1, got, msgID)
			}
			if err := v.Verify(r.header, r.body); err != nil {
				t.Errorf("attempt %d: signature: %v", i+1, err)
			}
			stamps[r.header.Get("webhook-timestamp")] = true
		}
		if len(stamps) != 3 {
			t.Errorf("timestamps %v: each attempt must be signed afresh", stamps)
		}
	})
}

func TestRelay410PausesWithoutSpendingAttempts(t *testing.T) {
	t.Parallel()
	gone := newEndpoint(t, status(410), status(200))
	other := newEndpoint(t, status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		pub, err := webhookpub.New(map[string]webhookpub.Endpoint{
			"gone":  {URL: gone.srv.URL, Secrets: []string{secret}},
			"other": {URL: other.srv.URL, Secrets: []string{secret}},
		}, loopback, webhookpub.WithGonePause(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		bubbled(pub)
		const otherID = "0190f5e2-7b4c-7000-8000-00000000a002"
		ob.Enqueue(t,
			outbox.Message{ID: msgID, Topic: "gone", Payload: []byte(`{}`)},
			outbox.Message{ID: otherID, Topic: "other", Payload: []byte(`{}`)},
		)
		// One attempt only: had the 410 spent it, the message would be dead.
		pausedAt := time.Now()
		pubtest.StartRelay(t, ob.Store, pub, outbox.WithMaxAttempts(1))

		pubtest.Until(t, "the 410", 0, func() bool { return len(gone.seen()) == 1 })
		// The other destination is not held up.
		pubtest.Until(t, "the other endpoint's delivery", 0, func() bool { return ob.Record(t, otherID).State == outbox.StateDelivered })
		if r := ob.Record(t, msgID); r.Attempts != 0 || r.State != outbox.StatePending {
			t.Errorf("after a 410: %v with %d attempts, want pending with 0 (a pause spends none)", r.State, r.Attempts)
		}

		pubtest.Until(t, "delivery after the pause", 10*time.Second, func() bool {
			return ob.Record(t, msgID).State == outbox.StateDelivered
		})
		if waited := time.Since(pausedAt); waited < 10*time.Minute {
			t.Errorf("delivered %v after the 410, before the 10m pause ended", waited)
		}
		seen := gone.seen()
		if len(seen) != 2 {
			t.Fatalf("paused endpoint saw %d requests, want 2", len(seen))
		}
		if gap := stampGap(t, seen[0], seen[1]); gap < 10*time.Minute {
			t.Errorf("second request came %v after the 410, before the 10m pause ended", gap)
		}
	})
}

func TestRelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(503, "Retry-After", "120"), status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		pub := bubbled(newPublisher(t, ep.srv.URL))
		ob.Enqueue(t, outbox.Message{ID: msgID, Topic: "partner", Payload: []byte(`{}`)})
		// The relay's own backoff is one second at most: a later retry is the
		// endpoint's Retry-After at work.
		at := time.Now()
		pubtest.StartRelay(t, ob.Store, pub, outbox.WithBackoff(time.Second, time.Second))

		pubtest.Until(t, "the 503 written back", 0, func() bool {
			r := ob.Record(t, msgID)
			return r.Attempts == 1 && r.State == outbox.StatePending && r.LastError != ""
		})
		if got := ob.Record(t, msgID).AvailableAt.Sub(at); got != 120*time.Second {
			t.Fatalf("next attempt scheduled %v after the 503, want the 120s of Retry-After", got)
		}
		pubtest.Until(t, "delivery after Retry-After", time.Second, func() bool {
			return ob.Record(t, msgID).State == outbox.StateDelivered
		})
		seen := ep.seen()
		if len(seen) != 2 {
			t.Fatalf("endpoint saw %d requests, want 2", len(seen))
		}
		if gap := stampGap(t, seen[0], seen[1]); gap < 120*time.Second {
			t.Errorf("retry came %v after the 503, before its Retry-After of 120s", gap)
		}
	})
}

// TestRelayResolvedDestinationsIsolated: messages of one topic go to each
// customer's own endpoint (a destination per subscription, resolved); a
// customer whose endpoint answers 410 is paused alone, the others are
// delivered meanwhile, and its messages go once the pause is over.
func TestRelayResolvedDestinationsIsolated(t *testing.T) {
	t.Parallel()
	acme := newEndpoint(t, status(410), status(200))
	globex := newEndpoint(t, status(200))
	tt := &tenants{subs: map[string]webhookpub.Endpoint{
		"acme/invoices":   {URL: acme.srv.URL, Secrets: []string{secretA}},
		"globex/invoices": {URL: globex.srv.URL, Secrets: []string{secretB}},
	}}
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		pub, err := webhookpub.New(nil, loopback, webhookpub.WithResolver(tt.resolve), webhookpub.WithGonePause(10*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		bubbled(pub)
		var msgs []outbox.Message
		for i := range 3 {
			for _, dest := range []string{"acme/invoices", "globex/invoices"} {
				msgs = append(msgs, outbox.Message{Topic: "invoice.paid", Destination: dest, Payload: []byte(strconv.Itoa(i))})
			}
		}
		ob.Enqueue(t, msgs...)
		start := time.Now()
		pubtest.StartRelay(t, ob.Store, pub)

		pubtest.Until(t, "globex's three deliveries", 0, func() bool { return len(globex.seen()) == 3 })
		if time.Since(start) >= 10*time.Minute {
			t.Errorf("globex waited %v: held by acme's pause", time.Since(start))
		}
		pubtest.Until(t, "acme's deliveries after its pause", time.Second, func() bool {
			st, err := ob.Store.Stats(context.Background())
			return err == nil && st.Pending == 0
		})
		if time.Since(start) < 10*time.Minute {
			t.Errorf("acme delivered %v after its 410, within the 10m pause", time.Since(start))
		}
		for _, r := range acme.seen()[1:] {
			if !verifies(t, r, secretA) {
				t.Error("acme's delivery is not signed with acme's secret")
			}
		}
		if n := len(acme.seen()); n != 4 {
			t.Errorf("acme saw %d requests, want 4 (the 410, then its three messages)", n)
		}
	})
}

// TestRelayMalformedRowDeadLettered: a row whose headers were damaged behind
// Enqueue's back (a header name with a space) is dead-lettered without being
// sent, the endpoint's breaker (tripping at the first failure here) does not
// count it, and the next message of its key is delivered.
func TestRelayMalformedRowDeadLettered(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		pub := bubbled(newPublisher(t, ep.srv.URL, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour))))
		const bad, next = "0190f5e2-7b4c-7000-8000-00000000a0b1", "0190f5e2-7b4c-7000-8000-00000000a0b2"
		ob.Enqueue(t,
			outbox.Message{ID: bad, Topic: "partner", Key: "invoice-7", Payload: []byte(`{}`)},
			outbox.Message{ID: next, Topic: "partner", Key: "invoice-7", Payload: []byte(`{}`)},
		)
		ob.Store.(*memstore.Store).Corrupt(bad, map[string]string{"Bad Name": "x"})
		pubtest.StartRelay(t, ob.Store, pub)
		pubtest.Until(t, "the next message of the key delivered", 0, func() bool { return ob.Record(t, next).State == outbox.StateDelivered })
		if r := ob.Record(t, bad); r.State != outbox.StateDead {
			t.Errorf("malformed row is %v, want dead", r.State)
		}
		if seen := ep.seen(); len(seen) != 1 || seen[0].header.Get("webhook-id") != next {
			t.Errorf("endpoint saw %d requests, want only the next message's", len(seen))
		}
	})
}
