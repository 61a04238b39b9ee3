package kafkapub

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
)

// IDHeader is the record header that carries the outbox message id.
const IDHeader = "outbox-id"

var (
	// ErrUnknownTopic is matched by the error of New when a topic of
	// WithTopics does not exist, and by the (permanent) error of Publish for
	// a message whose topic is not one of them.
	ErrUnknownTopic = errors.New("kafkapub: unknown topic")
	// ErrClosed is returned by Publish after Close.
	ErrClosed = errors.New("kafkapub: publisher closed")
)

// Publisher produces outbox messages to Kafka. It implements
// outbox.Publisher, is safe for concurrent use, and must be closed with
// Close.
type Publisher struct {
	client *kgo.Client
	topics []string // allowed topics, sorted; nil means any
}

var _ outbox.Publisher = (*Publisher)(nil)

// New returns a Publisher to the cluster reached through seeds. It refuses an
// empty seed list, a cluster it cannot reach (within ctx), and a topic of
// WithTopics that does not exist (an error matching ErrUnknownTopic), and
// returns an error naming an invalid or nil option.
func New(ctx context.Context, seeds []string, opts ...Option) (*Publisher, error) {
	var c config
	if err := applyOptions("New", &c, opts); err != nil {
		return nil, err
	}
	if len(seeds) == 0 {
		return nil, errors.New("kafkapub: New: no seed broker given")
	}
	kopts := append([]kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}, c.clientOpts...)
	client, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafkapub: New: WithClientOptions: %w", err)
	}
	if err := check(ctx, client, c.topics); err != nil {
		client.Close()
		return nil, err
	}
	p := &Publisher{client: client}
	if len(c.topics) > 0 {
		p.topics = slices.Clone(c.topics)
		slices.Sort(p.topics)
	}
	return p, nil
}

// check reaches the cluster and, if topics are named, checks they exist.
func check(ctx context.Context, client *kgo.Client, topics []string) error {
	adm := kadm.NewClient(client)
	if len(topics) == 0 {
		if _, err := adm.BrokerMetadata(ctx); err != nil {
			return fmt.Errorf("kafkapub: reach the cluster: %w", err)
		}
		return nil
	}
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("kafkapub: reach the cluster: %w", err)
	}
	for _, t := range topics {
		d, ok := details[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("%w: %q", ErrUnknownTopic, t)
		}
		if d.Err != nil {
			return fmt.Errorf("kafkapub: topic %q: %w", t, d.Err)
		}
	}
	return nil
}

// Publish produces d as one record and returns nil once it is acknowledged.
// A record that is its own fault is a permanent error, dead-lettered by the
// relay at once: too large, refused by the broker's validation (a compacted
// topic's record without a key), for an invalid or unauthorised topic, or for
// a topic not in WithTopics. Anything else (timeouts, leader changes, an
// unreachable cluster) is retried by the relay. After Close it returns
// ErrClosed.
func (p *Publisher) Publish(ctx context.Context, d outbox.Delivery) error {
	if p.topics != nil {
		if _, ok := slices.BinarySearch(p.topics, d.Topic); !ok {
			return retry.Permanent(fmt.Errorf("%w: %q is not one of %q", ErrUnknownTopic, d.Topic, p.topics))
		}
	}
	rec := &kgo.Record{Topic: d.Topic, Value: d.Payload}
	if d.Key != "" {
		rec.Key = []byte(d.Key)
	}
	rec.Headers = make([]kgo.RecordHeader, 0, len(d.Headers)+1)
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: IDHeader, Value: []byte(d.ID)})
	for k, v := range d.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	err := p.client.ProduceSync(ctx, rec).FirstErr()
	if err == nil {
		return nil
	}
	if errors.Is(err, kgo.ErrClientClosed) {
		return ErrClosed
	}
	err = fmt.Errorf("kafkapub: produce %s to %q: %w", d.ID, d.Topic, err)
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge),
		errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.InvalidTopicException),
		errors.Is(err, kerr.TopicAuthorizationFailed):
		return retry.Permanent(err)
	}
	return err
}

// Close flushes nothing (every Publish waited for its record) and closes the
// client. It is safe to call more than once and always returns nil (the
// error is there for one shape with the other publishers' Close).
func (p *Publisher) Close() error {
	p.client.Close()
	return nil
}
