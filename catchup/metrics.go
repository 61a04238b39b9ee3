package catchup

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentationName = "github.com/steadfast-go/steadfast/catchup"

type metrics struct {
	lag   metric.Float64Gauge
	pages metric.Int64Counter
	evs   metric.Int64Counter
	dead  metric.Int64Counter

	source              metric.MeasurementOption
	applied, duplicates metric.MeasurementOption
}

func newMetrics(mp metric.MeterProvider, source string) (*metrics, error) {
	m := mp.Meter(instrumentationName)
	ms := &metrics{source: metric.WithAttributes(attribute.String("catchup.source", source))}
	ms.applied = metric.WithAttributes(attribute.String("catchup.source", source), attribute.String("catchup.outcome", "applied"))
	ms.duplicates = metric.WithAttributes(attribute.String("catchup.source", source), attribute.String("catchup.outcome", "duplicate"))
	var err error
	if ms.lag, err = m.Float64Gauge("steadfast.catchup.lag", metric.WithUnit("s"),
		metric.WithDescription("Age of the newest event the poller has read (applied or found applied), at its last pass.")); err != nil {
		return nil, err
	}
	if ms.pages, err = m.Int64Counter("steadfast.catchup.pages", metric.WithDescription("Pages of the provider's list read.")); err != nil {
		return nil, err
	}
	if ms.evs, err = m.Int64Counter("steadfast.catchup.events",
		metric.WithDescription("Events read, by outcome: applied, or duplicate (already applied, by a webhook or an earlier pass).")); err != nil {
		return nil, err
	}
	if ms.dead, err = m.Int64Counter("steadfast.catchup.dead_letters", metric.WithDescription("Events made dead letters: after the maximum of attempts, or refused for good.")); err != nil {
		return nil, err
	}
	return ms, nil
}

func (m *metrics) counted(ctx context.Context, applied, duplicates int) {
	if applied > 0 {
		m.evs.Add(ctx, int64(applied), m.applied)
	}
	if duplicates > 0 {
		m.evs.Add(ctx, int64(duplicates), m.duplicates)
	}
}
