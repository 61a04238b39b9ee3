package retry

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instrumentation is the name of the meter.
const instrumentation = "github.com/steadfast-go/steadfast/retry"

// instruments are the counters a Policy reports to. Each is a no-op unless
// the application installed an OpenTelemetry SDK.
type instruments struct {
	attempts metric.Int64Counter
	retries  metric.Int64Counter
	giveUps  metric.Int64Counter
	refusals metric.Int64Counter
	opts     []metric.AddOption           // the policy's name, when it has one
	reasons  map[error][]metric.AddOption // give_ups options per reason
}

func newInstruments(mp metric.MeterProvider, name string) (*instruments, error) {
	m := mp.Meter(instrumentation)
	var ins instruments
	var err error
	if ins.attempts, err = m.Int64Counter("steadfast.retry.attempts",
		metric.WithDescription("Attempts made, first attempts included."),
		metric.WithUnit("{attempt}")); err != nil {
		return nil, err
	}
	if ins.retries, err = m.Int64Counter("steadfast.retry.retries",
		metric.WithDescription("Retries decided: waits started before another attempt."),
		metric.WithUnit("{retry}")); err != nil {
		return nil, err
	}
	if ins.giveUps, err = m.Int64Counter("steadfast.retry.give_ups",
		metric.WithDescription("Calls that were still failing when the policy stopped retrying them."),
		metric.WithUnit("{call}")); err != nil {
		return nil, err
	}
	if ins.refusals, err = m.Int64Counter("steadfast.retry.budget_refusals",
		metric.WithDescription("Retries refused by the retry budget."),
		metric.WithUnit("{retry}")); err != nil {
		return nil, err
	}
	var base []attribute.KeyValue
	if name != "" {
		base = append(base, attribute.String("retry.policy", name))
		ins.opts = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(base...))}
	}
	reasons := []error{ErrAttemptsExhausted, ErrDeadlineTooClose, ErrBudgetExhausted,
		ErrRetryAfterTooLong, ErrBackOffStop, ErrBodyNotRewindable}
	ins.reasons = make(map[error][]metric.AddOption, len(reasons))
	for _, reason := range reasons {
		kv := append(append([]attribute.KeyValue(nil), base...), attribute.String("retry.reason", reasonName(reason)))
		ins.reasons[reason] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
	}
	return &ins, nil
}

// reasonName returns the value of the retry.reason attribute of
// steadfast.retry.give_ups for a GaveUpError.Reason.
func reasonName(reason error) string {
	switch reason {
	case ErrAttemptsExhausted:
		return "attempts_exhausted"
	case ErrDeadlineTooClose:
		return "deadline"
	case ErrBudgetExhausted:
		return "budget_exhausted"
	case ErrRetryAfterTooLong:
		return "retry_after_too_long"
	case ErrBackOffStop:
		return "backoff_stop"
	case ErrBodyNotRewindable:
		return "body_not_rewindable"
	}
	return "other"
}
