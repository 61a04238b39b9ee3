package natspub_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
)

// BenchmarkThroughput compares the relay delivering through the publisher
// with the JetStream client publishing the same messages (with a
// Nats-Msg-Id, waiting for each ack) directly.
func BenchmarkThroughput(b *testing.B) {
	js, stream := connect(b, jetstream.StreamConfig{})
	pub := newPublisher(b, js, stream)
	subject := stream + ".bench"
	payload := make([]byte, 256)
	pubtest.Throughput(b, pub,
		func(int) outbox.Message { return outbox.Message{Topic: subject, Payload: payload} },
		func(ctx context.Context, _ int) error {
			id, _ := uuid.NewV7()
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: payload}, jetstream.WithMsgID(id.String()))
			return err
		})
}
