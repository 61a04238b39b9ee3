package breaker

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const scope = "github.com/steadfast-go/steadfast/breaker"

// instruments are shared by the breakers of a Group.
type instruments struct {
	state       metric.Int64Gauge
	transitions metric.Int64Counter
	rejections  metric.Int64Counter
}

// rejectOptions are made once per breaker so that counting a rejection
// allocates nothing.
type rejectOptions struct {
	open, probes, bulkhead []metric.AddOption
}

func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scope)
	var ins instruments
	var err error
	if ins.state, err = m.Int64Gauge("steadfast.breaker.state",
		metric.WithDescription("State of the circuit: 0 closed, 1 half-open, 2 open.")); err != nil {
		return nil, err
	}
	if ins.transitions, err = m.Int64Counter("steadfast.breaker.transitions",
		metric.WithDescription("State changes of the circuit."), metric.WithUnit("{transition}")); err != nil {
		return nil, err
	}
	if ins.rejections, err = m.Int64Counter("steadfast.breaker.rejections",
		metric.WithDescription("Calls rejected without running: circuit open, half-open probe limit, bulkhead full."),
		metric.WithUnit("{call}")); err != nil {
		return nil, err
	}
	return &ins, nil
}

func (ins *instruments) rejectOptions(name string) rejectOptions {
	opt := func(reason string) []metric.AddOption {
		return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String("breaker.name", name), attribute.String("breaker.reason", reason)))}
	}
	return rejectOptions{open: opt("open"), probes: opt("probe_limit"), bulkhead: opt("bulkhead_full")}
}

func (ins *instruments) reject(ctx context.Context, opts []metric.AddOption) {
	ins.rejections.Add(ctx, 1, opts...)
}

func (ins *instruments) recordState(ctx context.Context, name string, s State) {
	ins.state.Record(ctx, int64(s), metric.WithAttributes(attribute.String("breaker.name", name)))
}

func (ins *instruments) recordTransition(ctx context.Context, t Transition) {
	ins.recordState(ctx, t.Name, t.To)
	ins.transitions.Add(ctx, 1, metric.WithAttributes(
		attribute.String("breaker.name", t.Name),
		attribute.String("breaker.from", t.From.String()),
		attribute.String("breaker.to", t.To.String()),
		attribute.Bool("breaker.shared", t.Shared)))
}
