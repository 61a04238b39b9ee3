package redisshare_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/breaker/redisshare"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/internal/testserver"
)

func TestMain(m *testing.M) {
	// After a failed dial, go-redis's pool redials from a goroutine of its
	// own that sleeps a second between tries and ends at its next wake-up
	// once the client is closed.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

var (
	quiet   = slog.New(slog.DiscardHandler)
	errBoom = errors.New("boom")
)

func sharedClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	require.NoError(t, err)
	opt.PoolSize = 4
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// replica is one process of a service: its own Share and its own breaker,
// on the Redis key the replicas have in common.
type replica struct {
	share *redisshare.Share
	b     *breaker.Breaker
}

func replicas(t testing.TB, c redis.UniversalClient, n int, logger *slog.Logger, opts ...breaker.Option) []replica {
	t.Helper()
	prefix := uniquePrefix(t, c)
	rs := make([]replica, n)
	for i := range rs {
		rs[i] = newReplica(t, c, prefix, logger, opts...)
	}
	return rs
}

// uniquePrefix returns a key prefix of the test's own, whose keys are deleted
// at the end.
func uniquePrefix(t testing.TB, c redis.UniversalClient) string {
	prefix := "test:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return prefix
}

func newReplica(t testing.TB, c redis.UniversalClient, prefix string, logger *slog.Logger, opts ...breaker.Option) replica {
	t.Helper()
	s, err := redisshare.New(c, redisshare.WithPrefix(prefix), redisshare.WithInterval(10*time.Millisecond),
		redisshare.WithTimeout(time.Second), redisshare.WithLogger(logger))
	require.NoError(t, err)
	b, err := breaker.New("payments", append([]breaker.Option{breaker.WithLogger(quiet), breaker.WithSync(s)}, opts...)...)
	require.NoError(t, err)
	return replica{share: s, b: b}
}

func syncAll(t testing.TB, rs []replica) {
	t.Helper()
	for _, r := range rs {
		require.NoError(t, r.share.Sync(context.Background()))
	}
}

func call(b *breaker.Breaker, err error) error {
	_, e := breaker.Execute(context.Background(), b, func(context.Context) (int, error) { return 0, err })
	return e
}

func TestFailuresSeenByOneOpenAll(t *testing.T) {
	t.Parallel()
	rs := replicas(t, sharedClient(t), 3, quiet, breaker.WithConsecutiveFailures(3), breaker.WithOpenDuration(time.Hour))
	syncAll(t, rs)
	for range 3 {
		call(rs[0].b, errBoom)
	}
	require.Equal(t, breaker.Open, rs[0].b.State())
	for _, r := range rs[1:] {
		assert.Equal(t, breaker.Closed, r.b.State())
	}
	// One pass of each replica is what the staleness bound allows for.
	syncAll(t, rs)
	for i, r := range rs {
		assert.Equal(t, breaker.Open, r.b.State(), "replica %d", i)
		var called bool
		_, err := breaker.Execute(context.Background(), r.b, func(context.Context) (int, error) { called = true; return 0, nil })
		require.ErrorIs(t, err, breaker.ErrOpen)
		assert.False(t, called)
		d, ok := retryAfter(err)
		require.True(t, ok)
		assert.Greater(t, d, 59*time.Minute, "replica %d", i)
		if i > 0 {
			var oe *breaker.OpenError
			require.ErrorAs(t, err, &oe)
			assert.True(t, oe.Shared)
		}
	}
}

func retryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}

func TestSharedWindowTrips(t *testing.T) {
	t.Parallel()
	// Each replica sees 4 failures: below its own minimum of 10 calls; the
	// shared window sees 12.
	var holds atomic.Int32
	rs := replicas(t, sharedClient(t), 3, quiet, breaker.WithFailureRatio(0.5, 10), breaker.WithOpenDuration(time.Hour),
		breaker.WithStateHook(func(tr breaker.Transition) {
			if tr.Shared && tr.To == breaker.Open {
				holds.Add(1)
			}
		}))
	for _, r := range rs {
		for range 4 {
			call(r.b, errBoom)
		}
		require.Equal(t, breaker.Closed, r.b.State())
	}
	syncAll(t, rs) // the third push trips the window
	syncAll(t, rs) // everybody pulls
	for i, r := range rs {
		assert.Equal(t, breaker.Open, r.b.State(), "replica %d", i)
	}
	assert.Equal(t, int32(3), holds.Load(), "hooks did not see the shared transitions")
}

func TestSharedOpenEndsEverywhere(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	c := sharedClient(t)
	prefix := uniquePrefix(t, c)
	opts := []breaker.Option{breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(50 * time.Millisecond)}
	rs := []replica{
		newReplica(t, c, prefix, quiet, opts...),
		newReplica(t, c, prefix, quiet, append(opts, breaker.WithStateHook(func(tr breaker.Transition) {
			mu.Lock()
			defer mu.Unlock()
			if tr.Shared {
				seen = append(seen, tr.From.String()+"->"+tr.To.String())
			}
		}))...),
	}
	call(rs[0].b, errBoom)
	syncAll(t, rs)
	require.Equal(t, breaker.Open, rs[1].b.State())
	// Real time: Redis keeps the shared open period.
	for deadline := time.Now().Add(10 * time.Second); rs[1].b.State() == breaker.Open; time.Sleep(5 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "shared hold never ended")
		require.NoError(t, rs[1].share.Sync(context.Background()))
	}
	assert.NoError(t, call(rs[1].b, nil))
	mu.Lock()
	defer mu.Unlock()
	// Replica 1 was held, then released (more than once if its clock and Redis's disagreed on the
	// last millisecond).
	require.NotEmpty(t, seen)
	for i, tr := range seen {
		assert.Equal(t, []string{"closed->open", "open->closed"}[i%2], tr, "transition %d of %v", i, seen)
	}
	assert.Equal(t, "open->closed", seen[len(seen)-1])
}

// The background loop carries one replica's trip to the others (the bound
// itself, one pass of each replica, is checked with Sync in
// TestFailuresSeenByOneOpenAll).
func TestRunLoopPropagatesOpenState(t *testing.T) {
	t.Parallel()
	rs := replicas(t, sharedClient(t), 3, quiet, breaker.WithConsecutiveFailures(2), breaker.WithOpenDuration(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { assert.NoError(t, r.share.Run(ctx)) })
	}
	defer func() { cancel(); wg.Wait() }()
	for range 2 {
		call(rs[2].b, errBoom)
	}
	for i, r := range rs {
		assert.Eventually(t, func() bool { return r.b.State() == breaker.Open }, 10*time.Second, time.Millisecond, "replica %d", i)
	}
	require.ErrorIs(t, rs[0].share.Run(ctx), redisshare.ErrRunning)
}

func TestCallsDoNotWaitForEachOther(t *testing.T) {
	t.Parallel()
	rs := replicas(t, sharedClient(t), 3, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	var loops sync.WaitGroup
	for _, r := range rs {
		loops.Go(func() { r.share.Run(ctx) })
	}
	defer func() { cancel(); loops.Wait() }()

	// Every call stays inside until all 200 are inside at once: if any call
	// waited for another (a lock held across calls, a Redis round trip per
	// call behind a mutex), they could never all be inside together.
	const calls = 200
	var inside atomic.Int32
	all := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			_, err := breaker.Execute(context.Background(), rs[i%3].b, func(ctx context.Context) (int, error) {
				if inside.Add(1) == calls {
					close(all)
				}
				select {
				case <-all:
					return 1, nil
				case <-time.After(30 * time.Second):
					return 0, errors.New("not every call got in: calls wait for each other")
				}
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func TestRedisStoppedFallsBackToLocal(t *testing.T) {
	srv := testserver.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 4, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	rs := replicas(t, c, 3, logger, breaker.WithConsecutiveFailures(2), breaker.WithOpenDuration(time.Hour))
	syncAll(t, rs)

	srv.Stop(t)
	for _, r := range rs {
		require.Error(t, r.share.Sync(context.Background()))
	}
	assert.Contains(t, logs.String(), "Redis unreachable: breakers use local state")
	// The replicas keep working: calls run, and local failures still trip
	// the local breaker.
	for _, r := range rs {
		require.NoError(t, call(r.b, nil))
	}
	call(rs[0].b, errBoom)
	call(rs[0].b, errBoom)
	assert.Equal(t, breaker.Open, rs[0].b.State())
	assert.Equal(t, breaker.Closed, rs[1].b.State())
	require.Error(t, rs[0].share.Sync(context.Background()))
	assert.Equal(t, 3, bytes.Count([]byte(logs.String()), []byte("unreachable")), "an outage is logged once by each replica")

	// Redis back: the open state reaches the others. (go-redis's pool
	// retries dialing in the background once a dial failed, hence the loop.)
	srv.Start(t)
	for _, r := range rs {
		deadline := time.Now().Add(10 * time.Second)
		for r.share.Sync(context.Background()) != nil {
			require.True(t, time.Now().Before(deadline), "no sync succeeded within 10s of Redis restarting")
			time.Sleep(10 * time.Millisecond)
		}
	}
	syncAll(t, rs)
	assert.Contains(t, logs.String(), "Redis reachable again")
	for i, r := range rs {
		assert.Equal(t, breaker.Open, r.b.State(), "replica %d", i)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestNewRejectsNonsense(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		opt  redisshare.Option
		name string // the error begins "redisshare: New: " + name
	}{
		{redisshare.WithPrefix(""), "WithPrefix"},
		{redisshare.WithInterval(0), "WithInterval: interval 0s"},
		{redisshare.WithTimeout(-time.Second), "WithTimeout: timeout -1s"},
		{redisshare.WithLogger(nil), "WithLogger: logger is nil"},
		{nil, "option 0 is nil"},
	}
	for _, tt := range tests {
		s, err := redisshare.New(c, tt.opt)
		require.Error(t, err)
		assert.Nil(t, s)
		assert.ErrorContains(t, err, tt.name)
		assert.True(t, strings.HasPrefix(err.Error(), "redisshare: New: "+tt.name), "%q names the option", err)
	}
	_, err := redisshare.New(nil)
	assert.ErrorContains(t, err, "client is nil")
	assert.EqualError(t, err, "redisshare: New: client is nil")
}

func TestHookMaySync(t *testing.T) {
	t.Parallel()
	c := sharedClient(t)
	rs := replicas(t, c, 1, quiet)
	var b *breaker.Breaker
	var syncs atomic.Int32
	b, err := breaker.New("hooked", breaker.WithLogger(quiet), breaker.WithSync(rs[0].share), breaker.WithConsecutiveFailures(1),
		breaker.WithOpenDuration(time.Hour), breaker.WithStateHook(func(breaker.Transition) {
			// Calls back into the share, which calls back into the breaker.
			assert.NoError(t, rs[0].share.Sync(context.Background()))
			syncs.Add(1)
			_ = b.State()
		}))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(b, errBoom)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("deadlock: a hook calling Share.Sync never returned")
	}
	assert.Equal(t, int32(1), syncs.Load())
	assert.Equal(t, breaker.Open, b.State())
}

func TestScriptFlushed(t *testing.T) {
	t.Parallel()
	// A server of the test's own: SCRIPT FLUSH on the shared one would
	// disturb other tests.
	srv := testserver.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 2})
	t.Cleanup(func() { c.Close() })
	rs := replicas(t, c, 2, quiet, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour))
	syncAll(t, rs)
	require.NoError(t, c.ScriptFlush(context.Background()).Err())
	call(rs[0].b, errBoom)
	syncAll(t, rs) // reloads the script, and loses nothing
	assert.Equal(t, breaker.Open, rs[1].b.State())
}
