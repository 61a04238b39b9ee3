package outbox

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// contextWithTraceParent returns ctx carrying the remote span context of tp
// (the W3C traceparent a store recorded at enqueue), or ctx unchanged when tp
// is empty or invalid.
func contextWithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}
