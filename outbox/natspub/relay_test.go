package natspub_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/natspub"
)

// killedStore is the store as seen by a relay process that dies right after
// publishing: its write-backs never reach the database.
type killedStore struct {
	outbox.Store
	settles atomic.Int32
}

func (s *killedStore) Settle(_ context.Context, outcomes []backend.Outcome) ([]int64, error) {
	s.settles.Add(1)
	// Reported as refused so that the doomed relay drops them at once.
	refused := make([]int64, len(outcomes))
	for i, o := range outcomes {
		refused[i] = o.Position
	}
	return refused, nil
}

func TestRelayKilledAfterPublishStreamHoldsOnce(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	ob := pubtest.NewOutbox(t)
	store := ob.Store
	ctx := context.Background()
	const id = "0190f5e2-7b4c-7000-8000-00000000b001"
	ob.Enqueue(t, outbox.Message{ID: id, Topic: stream + ".orders", Payload: []byte(`{"order":1}`)})
	// A short lease (on the database's clock), so that the second relay
	// takes the message over soon; a publish takes milliseconds.
	const lease = 2 * time.Second
	opts := []outbox.Option{outbox.WithLease(lease), outbox.WithPublishTimeout(lease / 2), outbox.WithPollInterval(50 * time.Millisecond)}
	pub := &pubtest.Counting{Publisher: newPublisher(t, js, stream, natspub.WithMaxRedeliveryDelay(lease))}

	// The first relay publishes, then dies before its write-back.
	killed := &killedStore{Store: store}
	stop := pubtest.StartRelay(t, killed, pub, opts...)
	pubtest.Until(t, "the first publish and its lost write-back", 0, func() bool { return killed.settles.Load() > 0 })
	stop()
	if pub.Delivered() != 1 || streamMsgs(t, js, stream) != 1 {
		t.Fatalf("after the first relay: %d publishes, %d messages in the stream", pub.Delivered(), streamMsgs(t, js, stream))
	}
	if r, _ := store.Get(ctx, id); r.State != outbox.StatePending {
		t.Fatalf("message is %v after the relay died, want still pending", r.State)
	}

	// Another relay takes the message over once the lease expired and
	// publishes it again, with the same Nats-Msg-Id.
	pubtest.StartRelay(t, store, pub, opts...)
	pubtest.Until(t, "delivery by the second relay", 0, func() bool {
		r, err := store.Get(ctx, id)
		return err == nil && r.State == outbox.StateDelivered
	})
	if n := pub.Delivered(); n != 2 {
		t.Fatalf("message published %d times, want 2 (once per relay)", n)
	}
	if n := streamMsgs(t, js, stream); n != 1 {
		t.Fatalf("stream holds %d messages, want 1: JetStream must drop the redelivery", n)
	}
}
