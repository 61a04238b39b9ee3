package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast/idempotency"
)

// counters returns the sums of the package's counters by name and kind.
func counters(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("%s is %T; want an int64 sum", m.Name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				kind, _ := dp.Attributes.Value("idempotency.kind")
				out[m.Name+"/"+kind.AsString()] += dp.Value
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	// Middleware: a run, a replay, a mismatch, a conflict, a store error.
	store := newStore(t)
	release := make(chan struct{})
	entered := make(chan struct{})
	srv := newMiddleware(t, store, idempotency.WithMeterProvider(mp))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		w.WriteHeader(http.StatusCreated)
	}))
	serve(srv, request("/x", "k", "a"))
	serve(srv, request("/x", "k", "a"))
	serve(srv, request("/x", "k", "b"))
	done := make(chan struct{})
	go func() { defer close(done); serve(srv, request("/slow", "k", "a")) }()
	<-entered
	serve(srv, request("/slow", "k", "a"))
	close(release)
	<-done
	failing := newMiddleware(t, &faultyStore{Store: newStore(t), failClaim: true}, idempotency.WithMeterProvider(mp), idempotency.WithLogger(discardLogger()))(srv)
	serve(failing, request("/x", "k", "a"))

	// Do: a run, a replay, a mismatch.
	r := newRunner(t, newStore(t), idempotency.WithMeterProvider(mp))
	ctx := context.Background()
	one := func(context.Context) (int, error) { return 1, nil }
	_, _ = idempotency.Do(ctx, r, "k", one)
	_, _ = idempotency.Do(ctx, r, "k", one)
	if _, err := idempotency.Do(ctx, r, "k", one, idempotency.WithFingerprint([]byte("other"))); !errors.Is(err, idempotency.ErrFingerprintMismatch) {
		t.Fatal(err)
	}

	got := counters(t, reader)
	want := map[string]int64{
		"steadfast.idempotency.executions/http":   2,
		"steadfast.idempotency.replays/http":      1,
		"steadfast.idempotency.mismatches/http":   1,
		"steadfast.idempotency.conflicts/http":    1,
		"steadfast.idempotency.store_errors/http": 1,
		"steadfast.idempotency.executions/do":     1,
		"steadfast.idempotency.replays/do":        1,
		"steadfast.idempotency.mismatches/do":     1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d; want %d", k, got[k], v)
		}
	}
}
