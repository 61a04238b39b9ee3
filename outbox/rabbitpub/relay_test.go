package rabbitpub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
)

// TestRelayKeepsUnroutableMessage: through the relay, a message that no
// queue would receive is not lost: it stays pending with the broker's reason
// as its last error, and is delivered once a queue is bound.
func TestRelayKeepsUnroutableMessage(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	pub := newPublisher(t, b.url, b.exchange)
	ob := pubtest.NewOutbox(t)
	const id = "0190f5e2-7b4c-7000-8000-00000000d001"
	ob.Enqueue(t, outbox.Message{ID: id, Topic: "late", Payload: []byte(`{}`)})
	pubtest.StartRelay(t, ob.Store, pub, outbox.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		outbox.WithPollInterval(10*time.Millisecond), outbox.WithMaxAttempts(1000))

	pubtest.Until(t, "a returned attempt written back", 0, func() bool {
		r := ob.Record(t, id)
		return r.Attempts >= 2 && strings.Contains(r.LastError, "returned")
	})
	if r := ob.Record(t, id); r.State != outbox.StatePending {
		t.Fatalf("unroutable message is %v, want pending", r.State)
	}
	q := b.bind(t, "late")
	pubtest.Until(t, "delivery once a queue is bound", 0, func() bool {
		return ob.Record(t, id).State == outbox.StateDelivered
	})
	got, ok := b.get(t, q)
	if !ok || got.MessageId != id {
		t.Fatalf("queue holds %q (%v), want the message", got.MessageId, ok)
	}
}
