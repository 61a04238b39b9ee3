package natspub_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/natspub"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
)

// killedStore is the store as seen by a relay process that dies right after
// publishing: its write-backs never reach the database.
type killedStore struct {
	outbox.Store
	settles atomic.Int32
}

func (s *killedStore) Settle(_ context.Context, outcomes []outbox.Outcome) error {
	s.settles.Add(1)
	// Reported as rejected so that the doomed relay drops them at once.
	return &outbox.LeaseLostError{Rejected: len(outcomes)}
}

func TestRelayKilledAfterPublishStreamHoldsOnce(t *testing.T) {
	t.Parallel()
	js, stream := connect(t, jetstream.StreamConfig{})
	clock := outboxtest.NewClock(time.Unix(1_700_000_000, 0))
	ob := pubtest.NewOutbox(t, clock.Now)
	store := ob.Store
	ctx := context.Background()
	const id = "0190f5e2-7b4c-7000-8000-00000000b001"
	ob.Enqueue(t, outbox.Message{ID: id, Topic: stream + ".orders", Payload: []byte(`{"order":1}`)})
	const lease = time.Minute
	opts := []outbox.Option{outbox.WithClock(clock), outbox.WithLease(lease)}
	pub := &pubtest.Counting{Publisher: newPublisher(t, js, stream, natspub.WithMaxRedeliveryDelay(lease))}

	// The first relay publishes, then dies before its write-back.
	killed := &killedStore{Store: store}
	stop := pubtest.StartRelay(t, killed, pub, opts...)
	pubtest.Until(t, "the first publish and its lost write-back", nil, 0, func() bool { return killed.settles.Load() > 0 })
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
	// The clock jumps to the end of the lease, then moves by a poll interval
	// at a time, only until the new relay has published: a clock racing on
	// would expire the new lease too, and a third publish would follow.
	clock.Advance(lease)
	pubtest.Until(t, "the second relay's publish", clock, time.Second, func() bool { return pub.Delivered() >= 2 })
	pubtest.Until(t, "delivery by the second relay", nil, 0, func() bool {
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
