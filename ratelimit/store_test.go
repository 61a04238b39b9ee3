package ratelimit_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/ratelimit"
)

// switchStore lets everything through while up, and fails while down.
type switchStore struct {
	down     atomic.Bool
	reserves atomic.Int64
}

func (s *switchStore) Reserve(ctx context.Context, key string, limits []ratelimit.Limit, after, maxWait time.Duration) (time.Duration, error) {
	if s.down.Load() {
		return 0, errDown
	}
	s.reserves.Add(1)
	return after, nil
}

func (s *switchStore) Pause(ctx context.Context, key string, d time.Duration) error {
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *switchStore) Learn(context.Context, string, ratelimit.Limit, time.Duration, time.Duration) error {
	if s.down.Load() {
		return errDown
	}
	return nil
}

// When the store fails, each replica falls back at once to its share, with
// nothing saved up; when it answers again, the replica keeps to its share
// as well for a while, since the others may not have seen it come back yet.
// One log line per switch.
func TestStoreOutageFallsBackToTheShareWithoutBurst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		var mu sync.Mutex
		log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
		s := &switchStore{}
		l, err := ratelimit.New(ratelimit.WithLimit(100, time.Second, 20), ratelimit.WithStore(s, 4), ratelimit.WithLogger(log))
		require.NoError(t, err)
		ctx := context.Background()

		for range 50 {
			require.NoError(t, l.Allow(ctx, "k"))
		}
		assert.True(t, l.Sharing())

		s.down.Store(true)
		var le *ratelimit.LimitedError
		require.ErrorAs(t, l.Allow(ctx, "k"), &le, "the local share starts with nothing saved up")
		assert.Equal(t, 40*time.Millisecond, le.Delay, "a quarter of 100/s")

		start := time.Now()
		n := 0
		for time.Since(start) < 2*time.Second {
			require.NoError(t, l.Wait(ctx, "k"))
			n++
		}
		assert.InDelta(t, 50, n, 1, "25/s for 2s")
		assert.False(t, l.Sharing())
		st, ok := keyState(l, "k")
		require.True(t, ok)
		assert.Equal(t, ratelimit.KeyState{Rate: 25, Local: true}, st, "what an operator's page shows")

		s.down.Store(false)
		time.Sleep(time.Second) // the breaker lets a probe through
		require.NoError(t, l.Wait(ctx, "k"))
		assert.True(t, l.Sharing())
		// For two seconds the local share still applies: other replicas
		// may still be on theirs.
		start = time.Now()
		n = 0
		for time.Since(start) < 2*time.Second {
			require.NoError(t, l.Wait(ctx, "k"))
			n++
		}
		assert.InDelta(t, 54, n, 1, "25/s for 2s, and the share's burst of 5 saved up while the store was probed, less the probe")
		// Then the store alone decides (this one lets everything through).
		for range 100 {
			require.NoError(t, l.Allow(ctx, "k"))
		}

		mu.Lock()
		out := buf.String()
		mu.Unlock()
		assert.Equal(t, 1, strings.Count(out, "shared store unavailable"), out)
		assert.Equal(t, 1, strings.Count(out, "the quota is shared again"), out)
		assert.Contains(t, out, "replicas=4 err=\"store down\"")
	})
}

// A caller that gives up is not a store failure: its context's error is
// returned, and the limiter does not fall back.
func TestCallerCancellationIsNotAStoreFailure(t *testing.T) {
	t.Parallel()
	l, err := ratelimit.New(ratelimit.WithLimit(100, time.Second, 20), ratelimit.WithStore(&blockingStore{}, 4), ratelimit.WithLogger(quiet))
	require.NoError(t, err)
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		assert.ErrorIs(t, l.Wait(ctx, "k"), context.DeadlineExceeded)
		cancel()
	}
	assert.True(t, l.Sharing())
}

type blockingStore struct{ switchStore }

func (*blockingStore) Reserve(ctx context.Context, key string, limits []ratelimit.Limit, after, maxWait time.Duration) (time.Duration, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}
