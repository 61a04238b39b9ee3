package retry_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast/retry"
)

// sums collects the counters of reader, by name and then by the value of
// the retry.reason attribute ("" without one).
func sums(t *testing.T, reader *sdkmetric.ManualReader) map[string]map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			out[m.Name] = map[string]int64{}
			for _, dp := range s.DataPoints {
				v, _ := dp.Attributes.Value(attribute.Key("retry.reason"))
				out[m.Name][v.AsString()] += dp.Value
				name, _ := dp.Attributes.Value(attribute.Key("retry.policy"))
				assert.Equal(t, "payments", name.AsString())
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer mp.Shutdown(context.Background())
		p, err := retry.New(retry.WithLogger(quiet), retry.WithMeterProvider(mp), retry.WithName("payments"),
			retry.WithMaxAttempts(3), retry.WithBudget(0, 3, time.Minute))
		require.NoError(t, err)
		ctx := context.Background()

		calls := 0
		require.NoError(t, retry.Do(ctx, p, func(context.Context) error { // 2 attempts, 1 retry
			calls++
			if calls == 1 {
				return errFlaky
			}
			return nil
		}))
		_ = retry.Do(ctx, p, func(context.Context) error { return errFlaky })                         // 3 attempts, 2 retries, gives up
		_ = retry.Do(ctx, p, func(context.Context) error { return errFlaky })                         // 1 attempt, refused by the budget
		_ = retry.Do(ctx, p, func(context.Context) error { return retry.After(errFlaky, time.Hour) }) // 1 attempt, Retry-After too long

		got := sums(t, reader)
		assert.Equal(t, int64(7), got["steadfast.retry.attempts"][""])
		assert.Equal(t, int64(3), got["steadfast.retry.retries"][""])
		assert.Equal(t, int64(1), got["steadfast.retry.budget_refusals"][""])
		assert.Equal(t, map[string]int64{"attempts_exhausted": 1, "budget_exhausted": 1, "retry_after_too_long": 1},
			got["steadfast.retry.give_ups"])
	})
}

func TestBudgetExhaustionIsLoggedOncePerWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
		p, err := retry.New(retry.WithLogger(logger), retry.WithBudget(0, 0, time.Minute))
		require.NoError(t, err)
		for range 50 {
			_ = retry.Do(context.Background(), p, func(context.Context) error { return errFlaky })
		}
		assert.Equal(t, 1, strings.Count(buf.String(), "budget exhausted"), buf.String())
		assert.Contains(t, buf.String(), "level=WARN")
		time.Sleep(time.Minute)
		_ = retry.Do(context.Background(), p, func(context.Context) error { return errFlaky })
		assert.Equal(t, 2, strings.Count(buf.String(), "budget exhausted"))
		assert.NotContains(t, buf.String(), "retrying", "retries are logged at Debug only")
	})
}
