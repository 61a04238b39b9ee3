package ratelimit

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// maxMetricKeys bounds the values of the ratelimit.key attribute: the first
// 100 keys a limiter sees have their own; the others share "_other".
const maxMetricKeys = 100

const otherKey = "_other"

type metrics struct {
	waits      metric.Int64Counter
	waited     metric.Float64Histogram
	rejections metric.Int64Counter
	rate       metric.Float64Gauge

	mu    sync.Mutex
	named map[string]metric.MeasurementOption
	other metric.MeasurementOption
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter("github.com/steadfast-go/steadfast/ratelimit")
	m := &metrics{
		named: make(map[string]metric.MeasurementOption),
		other: metric.WithAttributeSet(attribute.NewSet(attribute.String("ratelimit.key", otherKey))),
	}
	var err error
	if m.waits, err = meter.Int64Counter("steadfast.ratelimit.waits",
		metric.WithDescription("Requests that waited for their key's budget."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if m.waited, err = meter.Float64Histogram("steadfast.ratelimit.wait.duration",
		metric.WithDescription("Time requests waited for their key's budget."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	if m.rejections, err = meter.Int64Counter("steadfast.ratelimit.rejections",
		metric.WithDescription("Requests refused because their wait would outlast the deadline, or Allow found no budget."),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if m.rate, err = meter.Float64Gauge("steadfast.ratelimit.rate",
		metric.WithDescription("A key's current rate: its shortest window's, or lower when a provider announced less; 0 while paused."),
		metric.WithUnit("{request}/s")); err != nil {
		return nil, err
	}
	return m, nil
}

// attrs returns the attribute option of key: its own for the first
// maxMetricKeys keys ever seen (named), "_other" after.
func (m *metrics) attrs(key string) (o metric.MeasurementOption, named bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.named[key]; ok {
		return o, true
	}
	if len(m.named) >= maxMetricKeys {
		return m.other, false
	}
	o = metric.WithAttributeSet(attribute.NewSet(attribute.String("ratelimit.key", key)))
	m.named[key] = o
	return o, true
}

func (m *metrics) waited1(e *entry, d time.Duration) {
	ctx := context.Background()
	m.waits.Add(ctx, 1, e.attrs)
	m.waited.Record(ctx, d.Seconds(), e.attrs)
}

func (m *metrics) rejected(e *entry) { m.rejections.Add(context.Background(), 1, e.attrs) }

func (m *metrics) setRate(e *entry, r float64) { m.rate.Record(context.Background(), r, e.attrs) }
