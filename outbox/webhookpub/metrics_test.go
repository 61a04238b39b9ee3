package webhookpub_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast/outbox/webhookpub"
)

func TestAttemptMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	ep := newEndpoint(t, status(200), status(503), status(410), status(400))
	p := newPublisher(t, ep.srv.URL, webhookpub.WithMeterProvider(mp))
	for range 4 {
		_ = p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-00000000c001"))
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "steadfast.webhookpub.attempts" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := dp.Attributes.Value("webhookpub.outcome")
				e, _ := dp.Attributes.Value("webhookpub.endpoint")
				if e.AsString() != "partner" {
					t.Errorf("endpoint attribute %q", e.AsString())
				}
				got[r.AsString()] += dp.Value
			}
		}
	}
	for _, r := range []string{"delivered", "retry", "paused", "permanent"} {
		if got[r] != 1 {
			t.Errorf("attempts{result=%s} = %d, want 1 (all: %v)", r, got[r], got)
		}
	}
}
