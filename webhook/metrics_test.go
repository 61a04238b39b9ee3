package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast/webhook"
)

func TestMiddlewareMetrics(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	signer := mustSigner(t, vecSecret)
	mw, err := webhook.NewMiddleware(mustVerifier(t, []string{vecSecret}, fixedClock(now)),
		webhook.WithMeterProvider(mp), webhook.WithMaxBodyBytes(8))
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	send := func(body string, sign bool) {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewBufferString(body))
		if sign {
			mustSetHeaders(t, signer, r.Header, "m", time.Unix(now, 0), []byte(body))
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	send("ok", true)
	send("ok", true)
	send("forged", false)
	send("far too large", true)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "steadfast.webhook.verifications" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := dp.Attributes.Value("webhook.outcome")
				got[r.AsString()] = dp.Value
			}
		}
	}
	want := map[string]int64{"ok": 2, "invalid": 1, "too_large": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("verifications{result=%s} = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
