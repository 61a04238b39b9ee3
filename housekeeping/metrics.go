package housekeeping

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentationName = "github.com/steadfast-go/steadfast/housekeeping"

// The outcomes of a pass, as steadfast.housekeeping.passes counts them.
const (
	outcomeSwept   = "swept"
	outcomeSkipped = "skipped"
	outcomeFailed  = "failed"
	outcomeLost    = "lease_lost"
)

type metrics struct {
	removedC metric.Int64Counter
	passes   metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	m := mp.Meter(instrumentationName)
	var ms metrics
	var err error
	if ms.removedC, err = m.Int64Counter("steadfast.housekeeping.removed", metric.WithUnit("{row}"),
		metric.WithDescription("Rows removed past their retention, by kind.")); err != nil {
		return nil, err
	}
	if ms.passes, err = m.Int64Counter("steadfast.housekeeping.passes", metric.WithUnit("{pass}"),
		metric.WithDescription("Housekeeping passes, by outcome: swept, skipped (another replica holds the lease), failed, lease_lost.")); err != nil {
		return nil, err
	}
	return &ms, nil
}

func (m *metrics) removed(ctx context.Context, kind string, n int64) {
	m.removedC.Add(ctx, n, metric.WithAttributes(attribute.String("housekeeping.kind", kind)))
}

func (m *metrics) pass(ctx context.Context, outcome string) {
	m.passes.Add(ctx, 1, metric.WithAttributes(attribute.String("housekeeping.outcome", outcome)))
}
