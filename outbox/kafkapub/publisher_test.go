package kafkapub_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/kafkapub"
	"github.com/steadfast-go/steadfast/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newCluster(t testing.TB, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newPublisher(t testing.TB, c *kfake.Cluster, opts ...kafkapub.Option) *kafkapub.Publisher {
	t.Helper()
	p, err := kafkapub.New(context.Background(), c.ListenAddrs(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func delivery(topic, key string, pos int) outbox.Delivery {
	id, _ := uuid.NewV7()
	return outbox.Delivery{Message: outbox.Message{ID: id.String(), Topic: topic, Key: key, Payload: []byte(strconv.Itoa(pos)),
		Headers: map[string]string{outbox.PositionHeader: strconv.Itoa(pos)}}, Attempt: 1, Position: int64(pos)}
}

// readAll consumes n records of topic from the start.
func readAll(t testing.TB, c *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(recs), n)
		}
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestPublishProducesOneRecord(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, "orders")
	p := newPublisher(t, c, kafkapub.WithTopics("orders"))
	d := delivery("orders", "customer-7", 1)
	if err := p.Publish(context.Background(), d); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	recs := readAll(t, c, "orders", 1)
	r := recs[0]
	if string(r.Key) != "customer-7" || string(r.Value) != "1" || header(r, kafkapub.IDHeader) != d.ID ||
		header(r, outbox.PositionHeader) != "1" {
		t.Errorf("record = key %q value %q headers %v", r.Key, r.Value, r.Headers)
	}
}

func TestNewRefusesMisconfiguration(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "orders")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name  string
		seeds []string
		opts  []kafkapub.Option
		is    error
		text  string
	}{
		{"no seeds", nil, nil, nil, "seed"},
		{"unknown topic", c.ListenAddrs(), []kafkapub.Option{kafkapub.WithTopics("orders", "refunds")}, kafkapub.ErrUnknownTopic, "refunds"},
		{"empty topic name", c.ListenAddrs(), []kafkapub.Option{kafkapub.WithTopics("")}, nil, "WithTopics"},
		{"bad client option", c.ListenAddrs(), []kafkapub.Option{kafkapub.WithClientOptions(kgo.ProducerBatchMaxBytes(0))}, nil, "WithClientOptions"},
		{"nil client option", c.ListenAddrs(), []kafkapub.Option{kafkapub.WithClientOptions(nil)}, nil, "WithClientOptions"},
		{"nil option", c.ListenAddrs(), []kafkapub.Option{nil}, nil, "kafkapub: New: option 0 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kafkapub.New(ctx, tt.seeds, tt.opts...)
			if err == nil {
				p.Close()
				t.Fatal("New = nil error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("New = %v, want %v", err, tt.is)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("New = %v, want an error naming %q", err, tt.text)
			}
		})
	}
}

func TestPublishRefusesOtherTopics(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "orders")
	p := newPublisher(t, c, kafkapub.WithTopics("orders"))
	err := p.Publish(context.Background(), delivery("refunds", "", 1))
	if !errors.Is(err, kafkapub.ErrUnknownTopic) || !retry.IsPermanent(err) {
		t.Fatalf("Publish to another topic = %v, want permanent ErrUnknownTopic", err)
	}
}

func TestPublishAfterClose(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "orders")
	p, err := kafkapub.New(context.Background(), c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close()
	if err := p.Publish(context.Background(), delivery("orders", "", 1)); !errors.Is(err, kafkapub.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
}

// failProduce answers a produce request with a retriable error for every
// partition, before the broker stores anything.
func failProduce(req kmsg.Request) kmsg.Response {
	return produceError(req, kerr.NotLeaderForPartition.Code)
}

// produceError answers a produce request with code for every partition.
func produceError(req kmsg.Request, code int16) kmsg.Response {
	r := req.(*kmsg.ProduceRequest)
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// TestPerKeyOrderAcrossRetries drives the publisher as the relay does (the
// messages of a key one at a time, each retried until delivered, keys in
// parallel) while the broker fails produce requests in bursts: some are
// retried inside the client, some reach the relay as errors. Each key's
// records must be in its partition in position order, each exactly once.
func TestPerKeyOrderAcrossRetries(t *testing.T) {
	t.Parallel()
	const keys, perKey = 4, 25
	c := newCluster(t, 3, "events")
	var requests, failed atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		// Fail three requests in a row out of every ten.
		if n := requests.Add(1); n%10 < 3 {
			failed.Add(1)
			return failProduce(req), nil, true
		}
		return nil, nil, false
	})
	// One client retry only, so that a burst surfaces to the relay too.
	// Short client backoffs keep the test fast; they change no outcome.
	p := newPublisher(t, c, kafkapub.WithClientOptions(kgo.RecordRetries(1),
		kgo.RetryBackoffFn(func(int) time.Duration { return time.Millisecond }),
		kgo.MetadataMinAge(10*time.Millisecond)))

	var relayRetries atomic.Int64
	var wg sync.WaitGroup
	for k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("key-%d", k)
			for pos := range perKey {
				d := delivery("events", key, pos)
				for attempt := 1; ; attempt++ {
					d.Attempt = attempt
					err := p.Publish(context.Background(), d)
					if err == nil {
						break
					}
					if retry.IsPermanent(err) || attempt > 50 {
						t.Errorf("%s position %d: %v", key, pos, err)
						return
					}
					relayRetries.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() == 0 || relayRetries.Load() == 0 {
		t.Fatalf("no failure reached the client (%d) or the relay (%d): the test tests nothing", failed.Load(), relayRetries.Load())
	}
	recs := readAll(t, c, "events", keys*perKey)
	got := map[string][]int{}
	partition := map[string]int32{}
	for _, r := range recs {
		k := string(r.Key)
		pos, _ := strconv.Atoi(header(r, outbox.PositionHeader))
		got[k] = append(got[k], pos)
		if p, ok := partition[k]; ok && p != r.Partition {
			t.Errorf("key %s in partitions %d and %d", k, p, r.Partition)
		}
		partition[k] = r.Partition
	}
	for k, positions := range got {
		if len(positions) != perKey {
			t.Errorf("key %s: %d records, want %d: %v", k, len(positions), perKey, positions)
			continue
		}
		for i, pos := range positions {
			if pos != i {
				t.Errorf("key %s: record %d has position %d: order broken: %v", k, i, pos, positions)
				break
			}
		}
	}
	t.Logf("%d produce requests failed by the broker, %d publishes retried by the relay", failed.Load(), relayRetries.Load())
}

var _ outbox.Inbox = (*sqlstore.Store)(nil)

func TestConsumeRunsOncePerMessage(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "orders")
	p := newPublisher(t, c)
	ctx := context.Background()
	d := delivery("orders", "k", 1)
	// The relay produced the message twice (its write-back was lost).
	for range 2 {
		if err := p.Publish(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, c, "orders", 2)
	inbox := pubtest.NewInbox(t)
	var runs atomic.Int32
	fn := func(context.Context, *sql.Tx) error { runs.Add(1); return nil }
	failing := func(context.Context, *sql.Tx) error { runs.Add(1); return errors.New("handler failed") }

	if _, err := kafkapub.Consume(ctx, inbox, "billing", recs[0], failing); err == nil {
		t.Fatal("Consume with a failing handler = nil")
	}
	if pos, ok := kafkapub.Position(recs[0]); !ok || pos != 1 {
		t.Errorf("Position = %d, %v; want 1", pos, ok)
	}
	if _, ok := kafkapub.Position(&kgo.Record{}); ok {
		t.Error("Position of a record without the header reported ok")
	}
	if dup, err := kafkapub.Consume(ctx, inbox, "billing", recs[0], fn); err != nil || dup {
		t.Fatalf("Consume = %v, %v; want first processing", dup, err)
	}
	if dup, err := kafkapub.Consume(ctx, inbox, "billing", recs[1], fn); err != nil || !dup {
		t.Fatalf("Consume of the copy = %v, %v; want duplicate", dup, err)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2", n)
	}
	if _, err := kafkapub.Consume(ctx, inbox, "billing", &kgo.Record{Value: []byte("x")}, fn); !errors.Is(err, kafkapub.ErrNoMessageID) {
		t.Errorf("Consume without id = %v, want ErrNoMessageID", err)
	}
	for name, call := range map[string]func() error{
		"nil inbox":  func() error { _, err := kafkapub.Consume(ctx, nil, "billing", recs[0], fn); return err },
		"nil record": func() error { _, err := kafkapub.Consume(ctx, inbox, "billing", nil, fn); return err },
		"nil fn":     func() error { _, err := kafkapub.Consume(ctx, inbox, "billing", recs[0], nil); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("Consume with a %s = nil error", name)
		}
	}
}

// TestRecordRefusedAsInvalidIsPermanent: a record the broker refuses as
// invalid (a compacted topic's record without a key, a record failing the
// broker's validation) is the message's own fault: permanent, dead-lettered
// at once, not retried forever; the next record goes through.
func TestRecordRefusedAsInvalidIsPermanent(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "compacted")
	var refused atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refused.CompareAndSwap(false, true) {
			return produceError(req, kerr.InvalidRecord.Code), nil, true
		}
		return nil, nil, false
	})
	p := newPublisher(t, c)
	if err := p.Publish(context.Background(), delivery("compacted", "", 1)); !retry.IsPermanent(err) {
		t.Fatalf("Publish of a record the broker found invalid = %v, want a permanent error", err)
	}
	if err := p.Publish(context.Background(), delivery("compacted", "k", 2)); err != nil {
		t.Fatalf("the next record: %v", err)
	}
}
