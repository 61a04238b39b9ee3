package breaker_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/breaker/internal/sharing"
)

type recordingSyncer struct {
	mu                       sync.Mutex
	registered, unregistered []string
	notified                 int
}

// recordingSyncer is a Syncer of the test's own: tests in package breaker's
// tree may implement the exchange, which is internal to steadfast.
var _ breaker.Syncer = (*recordingSyncer)(nil)

func (s *recordingSyncer) Register(b sharing.Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registered = append(s.registered, b.Name())
}

func (s *recordingSyncer) Unregister(b sharing.Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered = append(s.unregistered, b.Name())
}

func (s *recordingSyncer) Notify(sharing.Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notified++
}

func TestGroupLazyAndBounded(t *testing.T) {
	t.Parallel()
	sy := &recordingSyncer{}
	g, err := breaker.NewGroup(breaker.WithMaxBreakers(2), breaker.WithConsecutiveFailures(1),
		breaker.WithOpenDuration(time.Hour), breaker.WithLogger(quiet), breaker.WithSync(sy))
	require.NoError(t, err)
	assert.Zero(t, g.Len(), "breakers made before first use")

	a, err := g.Get("a")
	require.NoError(t, err)
	again, err := g.Get("a")
	require.NoError(t, err)
	assert.Same(t, a, again)
	assert.Equal(t, "a", a.Name())
	_, err = g.Get("b")
	require.NoError(t, err)
	_, err = g.Get("a") // b is now the least recently used
	require.NoError(t, err)

	_, err = g.Get("c") // full: b (closed, idle, least recently used) goes
	require.NoError(t, err)
	assert.Equal(t, 2, g.Len())
	_, ok := g.Lookup("b")
	assert.False(t, ok, "the least recently used breaker was not the one evicted")
	_, ok = g.Lookup("a")
	assert.True(t, ok)

	// An open breaker is never evicted; with every one open the group is full.
	for _, k := range []string{"a", "c"} {
		b, _ := g.Get(k)
		call(b, errBoom)
		require.Equal(t, breaker.Open, b.State())
	}
	_, err = g.Get("d")
	require.ErrorIs(t, err, breaker.ErrGroupFull)

	sy.mu.Lock()
	defer sy.mu.Unlock()
	assert.Equal(t, []string{"a", "b", "c"}, sy.registered)
	assert.Equal(t, []string{"b"}, sy.unregistered)
	assert.Equal(t, 2, sy.notified, "the syncer was not told of the two local openings")
}

func TestGroupNeverEvictsBusyBreaker(t *testing.T) {
	t.Parallel()
	g, err := breaker.NewGroup(breaker.WithMaxBreakers(1), breaker.WithLogger(quiet))
	require.NoError(t, err)
	a, _ := g.Get("a")
	inside, leave := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		breaker.Execute(context.Background(), a, func(context.Context) (int, error) {
			close(inside)
			<-leave
			return 0, nil
		})
	}()
	<-inside
	_, err = g.Get("b")
	require.ErrorIs(t, err, breaker.ErrGroupFull)
	close(leave)
	<-done
	_, err = g.Get("b")
	require.NoError(t, err)
}

func TestTelemetry(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	b, err := breaker.New("payments", breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour),
		breaker.WithMeterProvider(mp), breaker.WithLogger(logger))
	require.NoError(t, err)
	for range 5 {
		call(b, errBoom)
	}

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 1, "one line per transition, nothing per call")
	assert.Contains(t, lines[0], "level=WARN")
	assert.Contains(t, lines[0], "breaker=payments from=closed to=open")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] = p.Value
				}
			}
		}
	}
	assert.Equal(t, map[string]int64{"steadfast.breaker.state": 2, "steadfast.breaker.transitions": 1, "steadfast.breaker.rejections": 4}, got)
}
