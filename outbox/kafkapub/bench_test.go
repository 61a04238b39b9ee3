package kafkapub_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/kafkapub"
)

// BenchmarkThroughput compares the relay delivering through the publisher
// with a franz-go client (same settings: idempotent, all ISR acks, no linger)
// producing the same records with ProduceSync directly, on kfake.
func BenchmarkThroughput(b *testing.B) {
	c := newCluster(b, 8, "bench")
	pub := newPublisher(b, c)
	direct, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(direct.Close)
	payload := make([]byte, 256)
	pubtest.Throughput(b, pub,
		func(i int) outbox.Message {
			return outbox.Message{Topic: "bench", Key: strconv.Itoa(i % 64), Payload: payload}
		},
		func(ctx context.Context, i int) error {
			id, _ := uuid.NewV7()
			return direct.ProduceSync(ctx, &kgo.Record{Topic: "bench", Key: []byte(strconv.Itoa(i % 64)), Value: payload,
				Headers: []kgo.RecordHeader{{Key: kafkapub.IDHeader, Value: []byte(id.String())}}}).FirstErr()
		})
}
