package idempotency

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterName is the instrumentation scope of the package's counters.
const meterName = "github.com/steadfast-go/steadfast/idempotency"

// metrics are the package's counters. Each carries the attribute
// idempotency.kind: "http" for Middleware, "do" for Do.
type metrics struct {
	executions  metric.Int64Counter
	replays     metric.Int64Counter
	conflicts   metric.Int64Counter
	mismatches  metric.Int64Counter
	storeErrors metric.Int64Counter
	opts        []metric.AddOption
}

func newMetrics(mp metric.MeterProvider, kind string) (*metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(meterName)
	var (
		ms   metrics
		errs [5]error
	)
	ms.executions, errs[0] = m.Int64Counter("steadfast.idempotency.executions",
		metric.WithDescription("Work run under a claimed key: handler calls and Do function calls."))
	ms.replays, errs[1] = m.Int64Counter("steadfast.idempotency.replays",
		metric.WithDescription("Duplicates answered with a stored result."))
	ms.conflicts, errs[2] = m.Int64Counter("steadfast.idempotency.conflicts",
		metric.WithDescription("Duplicates turned away because the key was in progress (409, ErrInProgress)."))
	ms.mismatches, errs[3] = m.Int64Counter("steadfast.idempotency.mismatches",
		metric.WithDescription("Keys reused with a different fingerprint (422, ErrFingerprintMismatch)."))
	ms.storeErrors, errs[4] = m.Int64Counter("steadfast.idempotency.store_errors",
		metric.WithDescription("Store calls that failed, full store included."))
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("idempotency: creating counters: %w", err)
		}
	}
	ms.opts = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("idempotency.kind", kind)))}
	return &ms, nil
}

func (m *metrics) add(ctx context.Context, c metric.Int64Counter) {
	c.Add(ctx, 1, m.opts...)
}
