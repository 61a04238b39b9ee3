package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast/ratelimit"
)

// sums returns, per instrument, the int64 sums or the float64 gauge values
// by ratelimit.key.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	out := map[string]map[string]float64{}
	key := func(s attribute.Set) string { v, _ := s.Value("ratelimit.key"); return v.AsString() }
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			vals := map[string]float64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					vals[key(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					vals[key(p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					vals[key(p.Attributes)] = p.Sum
				}
			}
			out[m.Name] = vals
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		l := newLimiter(t, ratelimit.WithLimit(10, time.Second, 1), ratelimit.WithMeterProvider(mp))
		ctx := context.Background()
		require.NoError(t, l.Wait(ctx, "a"))
		require.NoError(t, l.Wait(ctx, "a")) // waits 100ms
		assert.ErrorIs(t, l.Allow(ctx, "a"), ratelimit.ErrLimited)
		l.Observe(ctx, "a", response(200, "RateLimit", `"d";r=5;t=10`), time.Now())

		m := collect(t, reader)
		assert.Equal(t, 0.5, m["steadfast.ratelimit.rate"]["a"], "the announced rate")
		l.Observe(ctx, "a", response(429, "Retry-After", "2"), time.Now())
		assert.Equal(t, 0.0, collect(t, reader)["steadfast.ratelimit.rate"]["a"], "paused")
		time.Sleep(2 * time.Second)
		require.NoError(t, l.Wait(ctx, "a"))
		assert.Equal(t, 0.5, collect(t, reader)["steadfast.ratelimit.rate"]["a"], "the pause is over; the announcement holds 10s")
		time.Sleep(10 * time.Second)
		require.NoError(t, l.Wait(ctx, "a"))
		assert.Equal(t, 10.0, collect(t, reader)["steadfast.ratelimit.rate"]["a"], "the configured rate again")

		m = collect(t, reader)
		assert.Equal(t, 1.0, m["steadfast.ratelimit.waits"]["a"])
		assert.InDelta(t, 0.1, m["steadfast.ratelimit.wait.duration"]["a"], 1e-9)
		assert.Equal(t, 1.0, m["steadfast.ratelimit.rejections"]["a"])

		// The key attribute is bounded: the 101st key on is "_other".
		for i := range 150 {
			_ = l.Allow(ctx, fmt.Sprint("k", i))
			_ = l.Allow(ctx, fmt.Sprint("k", i))
		}
		m = collect(t, reader)
		assert.Len(t, m["steadfast.ratelimit.rejections"], 101, "100 keys and _other")
		assert.Equal(t, 51.0, m["steadfast.ratelimit.rejections"]["_other"])
	})
}
