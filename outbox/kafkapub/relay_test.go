package kafkapub_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/kafkapub"
)

// failing counts the publishes that failed.
type failing struct {
	outbox.Publisher
	failed atomic.Int64
}

func (f *failing) Publish(ctx context.Context, d outbox.Delivery) error {
	err := f.Publisher.Publish(ctx, d)
	if err != nil {
		f.failed.Add(1)
	}
	return err
}

// TestRelayKeepsPerKeyOrder runs the real relay over a SQLite outbox while
// the broker fails produce requests in bursts: each key's records must land
// in one partition, in the order of their positions, exactly once.
func TestRelayKeepsPerKeyOrder(t *testing.T) {
	t.Parallel()
	const keys, perKey = 4, 25
	c := newCluster(t, 3, "events")
	var requests, refused atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if n := requests.Add(1); n%10 < 3 {
			refused.Add(1)
			return failProduce(req), nil, true
		}
		return nil, nil, false
	})
	pub := &failing{Publisher: newPublisher(t, c, kafkapub.WithClientOptions(kgo.RecordRetries(1),
		kgo.RetryBackoffFn(func(int) time.Duration { return time.Millisecond }),
		kgo.MetadataMinAge(10*time.Millisecond)))}

	ob := pubtest.NewOutbox(t)
	var msgs []outbox.Message
	for pos := range perKey {
		for k := range keys {
			msgs = append(msgs, outbox.Message{Topic: "events", Key: fmt.Sprintf("key-%d", k), Payload: []byte(strconv.Itoa(pos))})
		}
	}
	ob.Enqueue(t, msgs...)
	pubtest.StartRelay(t, ob.Store, pub, outbox.WithBackoff(time.Millisecond, 10*time.Millisecond),
		outbox.WithPollInterval(5*time.Millisecond), outbox.WithMaxAttempts(1000))
	pubtest.Until(t, "every message delivered", 0, func() bool {
		st, err := ob.Store.Stats(context.Background())
		return err == nil && st.Pending == 0
	})
	if st, _ := ob.Store.Stats(context.Background()); st.Dead != 0 {
		t.Fatalf("%d dead letters", st.Dead)
	}
	if refused.Load() == 0 || pub.failed.Load() == 0 {
		t.Fatalf("no failure reached the client (%d) or the relay (%d): the test tests nothing", refused.Load(), pub.failed.Load())
	}

	recs := readAll(t, c, "events", keys*perKey)
	got := map[string][]int{}
	partition := map[string]int32{}
	for _, r := range recs {
		k := string(r.Key)
		v, _ := strconv.Atoi(string(r.Value))
		got[k] = append(got[k], v)
		if p, ok := partition[k]; ok && p != r.Partition {
			t.Errorf("key %s in partitions %d and %d", k, p, r.Partition)
		}
		partition[k] = r.Partition
	}
	if len(got) != keys {
		t.Fatalf("records of %d keys, want %d", len(got), keys)
	}
	for k, seq := range got {
		for i, v := range seq {
			if v != i || len(seq) != perKey {
				t.Fatalf("key %s: sequence %v, want 0..%d in order, once each", k, seq, perKey-1)
			}
		}
	}
	t.Logf("%d produce requests refused by the broker, %d publishes failed back to the relay", refused.Load(), pub.failed.Load())
}
