package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentationName = "github.com/steadfast-go/steadfast/outbox"

type metrics struct {
	deliveries metric.Int64Counter
	attempts   metric.Int64Counter
	dead       metric.Int64Counter
	leaseLost  metric.Int64Counter
	latency    metric.Float64Histogram
	backlog    metric.Int64ObservableGauge
	oldest     metric.Float64ObservableGauge
	deadNow    metric.Int64ObservableGauge

	stats atomic.Pointer[Stats]
	mu    sync.RWMutex
	attrs map[attrKey]attrOptions
	reg   metric.Registration
}

// attrOptions are the options of a set of attributes, as the variadic
// arguments of Add and Record (passed as slices, they are not copied to
// the heap on every measurement).
type attrOptions struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

type attrKey struct{ topic, outcome string }

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	m := mp.Meter(instrumentationName)
	var ms metrics
	var err error
	if ms.deliveries, err = m.Int64Counter("steadfast.outbox.deliveries", metric.WithDescription("Messages delivered (confirmed by the publisher).")); err != nil {
		return nil, err
	}
	if ms.attempts, err = m.Int64Counter("steadfast.outbox.attempts", metric.WithDescription("Publish attempts, by outcome.")); err != nil {
		return nil, err
	}
	if ms.dead, err = m.Int64Counter("steadfast.outbox.dead_letters", metric.WithDescription("Messages that became dead letters.")); err != nil {
		return nil, err
	}
	if ms.leaseLost, err = m.Int64Counter("steadfast.outbox.lease_lost", metric.WithDescription("Write-backs rejected because the claim's lease had been taken over.")); err != nil {
		return nil, err
	}
	if ms.latency, err = m.Float64Histogram("steadfast.outbox.publish.duration", metric.WithUnit("s"), metric.WithDescription("Duration of a publish.")); err != nil {
		return nil, err
	}
	if ms.backlog, err = m.Int64ObservableGauge("steadfast.outbox.backlog", metric.WithDescription("Pending messages (claimed or not).")); err != nil {
		return nil, err
	}
	if ms.oldest, err = m.Float64ObservableGauge("steadfast.outbox.oldest_pending_age", metric.WithUnit("s"), metric.WithDescription("Age of the oldest pending message.")); err != nil {
		return nil, err
	}
	if ms.deadNow, err = m.Int64ObservableGauge("steadfast.outbox.dead", metric.WithDescription("Dead letters in the store.")); err != nil {
		return nil, err
	}
	return &ms, nil
}

// register installs the gauges' callback; unregister removes it.
func (m *metrics) register(mp metric.MeterProvider) error {
	reg, err := mp.Meter(instrumentationName).RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := m.stats.Load()
		if s == nil {
			return nil
		}
		o.ObserveInt64(m.backlog, s.Pending)
		o.ObserveFloat64(m.oldest, s.OldestPendingAge.Seconds())
		o.ObserveInt64(m.deadNow, s.Dead)
		return nil
	}, m.backlog, m.oldest, m.deadNow)
	if err != nil {
		return err
	}
	m.reg = reg
	return nil
}

func (m *metrics) unregister() {
	if m.reg != nil {
		_ = m.reg.Unregister()
		m.reg = nil
	}
}

// option returns the cached attribute options of a topic and, when not
// empty, an outcome.
func (m *metrics) option(k attrKey) attrOptions {
	m.mu.RLock()
	o, ok := m.attrs[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	attrs := []attribute.KeyValue{attribute.String("outbox.topic", k.topic)}
	if k.outcome != "" {
		attrs = append(attrs, attribute.String("outbox.outcome", k.outcome))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	o = attrOptions{add: []metric.AddOption{opt}, record: []metric.RecordOption{opt}}
	m.mu.Lock()
	if m.attrs == nil {
		m.attrs = map[attrKey]attrOptions{}
	}
	m.attrs[k] = o
	m.mu.Unlock()
	return o
}

// topicAdd returns the options of a count of topic.
func (m *metrics) topicAdd(t string) []metric.AddOption { return m.option(attrKey{topic: t}).add }

func (m *metrics) attempt(ctx context.Context, topic, outcome string, took time.Duration) {
	m.attempts.Add(ctx, 1, m.option(attrKey{topic: topic, outcome: outcome}).add...)
	if took > 0 {
		m.latency.Record(ctx, took.Seconds(), m.option(attrKey{topic: topic}).record...)
	}
}
