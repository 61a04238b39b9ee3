package redisshare_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/internal/testserver"
)

// TestChaosRedisKilled kills and restarts the Redis server under three
// replicas that keep calling: calls go on during every outage (they never
// wait on Redis), and after each restart the replicas share state again.
func TestChaosRedisKilled(t *testing.T) {
	cycles := 4
	if testing.Short() {
		cycles = 1
	}
	srv := testserver.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 4, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	rs := replicas(t, c, 3, quiet, breaker.WithConsecutiveFailures(5))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { r.share.Run(ctx) })
	}
	var calls atomic.Int64
	for i := range 6 {
		r := rs[i%3]
		wg.Go(func() {
			for ctx.Err() == nil {
				breaker.Execute(ctx, r.b, func(context.Context) (int, error) { return 1, nil })
				calls.Add(1)
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()

	waitCalls := func(n int64) {
		t.Helper()
		start := calls.Load()
		deadline := time.Now().Add(30 * time.Second)
		for calls.Load()-start < n {
			require.True(t, time.Now().Before(deadline), "calls stopped")
			time.Sleep(time.Millisecond)
		}
	}
	for cycle := range cycles {
		srv.Kill(t)
		// Every replica notices (its pass fails), and calls still complete.
		for _, r := range rs {
			require.Error(t, r.share.Sync(context.Background()))
		}
		waitCalls(1000)

		srv.Start(t)
		for _, r := range rs { // go-redis redials in the background after failed dials
			deadline := time.Now().Add(30 * time.Second)
			for r.share.Sync(context.Background()) != nil {
				require.True(t, time.Now().Before(deadline), "cycle %d: no pass succeeded after Redis restarted", cycle)
				time.Sleep(10 * time.Millisecond)
			}
		}
		// Sharing resumes: a failure on one replica opens the others (a
		// breaker of this cycle's own, which the callers do not use).
		probes := make([]*breaker.Breaker, len(rs))
		for i, r := range rs {
			var err error
			probes[i], err = breaker.New(fmt.Sprintf("probe-%d", cycle), breaker.WithLogger(quiet), breaker.WithSync(r.share),
				breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour))
			require.NoError(t, err)
		}
		call(probes[cycle%3], errBoom)
		for i, p := range probes {
			assert.Eventually(t, func() bool { return p.State() == breaker.Open }, 30*time.Second, time.Millisecond,
				"cycle %d: replica %d did not see the shared state after Redis restarted", cycle, i)
		}
		waitCalls(100)
	}
}
