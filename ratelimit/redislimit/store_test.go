package redislimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/internal/testserver"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/ratelimit/redislimit"
)

func TestNewRefusesWhatMakesNoSense(t *testing.T) {
	t.Parallel()
	ok := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	defer ok.Close()
	_, err := redislimit.New(nil)
	assert.EqualError(t, err, "redislimit: New: client is nil")
	_, err = redislimit.New(ok, redislimit.WithPrefix(""))
	assert.EqualError(t, err, "redislimit: New: WithPrefix: prefix is empty")
	_, err = redislimit.New(ok, redislimit.WithTimeout(0))
	assert.EqualError(t, err, "redislimit: New: WithTimeout: timeout 0s must be positive")
	_, err = redislimit.New((*redis.Client)(nil))
	assert.EqualError(t, err, "redislimit: New: client is a nil *redis.Client")
	_, err = redislimit.New(ok, nil)
	assert.EqualError(t, err, "redislimit: New: option 0 is nil")

	deaf := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer deaf.Close()
	_, err = redislimit.New(deaf)
	assert.ErrorContains(t, err, "redislimit: New: the client ignores context deadlines: set ContextTimeoutEnabled: true")
}

func newStore(t testing.TB, c redis.UniversalClient, opts ...redislimit.Option) (*redislimit.Store, string) {
	t.Helper()
	p := prefix(t)
	// A second, not 50ms: these tests are about what the script decides,
	// on a machine where -race and other tests may hold a goroutine back.
	s, err := redislimit.New(c, append([]redislimit.Option{redislimit.WithPrefix(p), redislimit.WithTimeout(time.Second)}, opts...)...)
	require.NoError(t, err)
	return s, p
}

// near asserts that got, a delay computed on the server some time after
// from, is want as of from: at most want, and no less than want less three
// times the time since from (Redis' clock moved meanwhile, and an announced
// limit whose rate changed turns the time that passed into tokens at its
// new rate), give or take 3ms.
func near(t *testing.T, from time.Time, want, got time.Duration, msg string) {
	t.Helper()
	lo := want - 3*time.Since(from) - 3*time.Millisecond
	assert.True(t, got >= lo && got <= want+3*time.Millisecond, "%s: want %v (no less than %v), got %v", msg, want, lo, got)
}

// A window lets a burst through, then one request per interval; a delay
// over maxWait takes nothing.
func TestReserveIsAGCRAOnTheServersClock(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, newClient(t))
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 10, Period: time.Second, Burst: 3}}
	start := time.Now()
	for i := range 3 {
		d, err := s.Reserve(ctx, "k", lims, 0, 0)
		require.NoError(t, err)
		assert.Zero(t, d, "burst request %d", i)
	}
	d1, err := s.Reserve(ctx, "k", lims, 0, 0)
	require.NoError(t, err)
	near(t, start, 100*time.Millisecond, d1, "refused")
	d2, err := s.Reserve(ctx, "k", lims, 0, 0)
	require.NoError(t, err)
	near(t, start, 100*time.Millisecond, d2, "nothing was taken by the refusal")
	d3, err := s.Reserve(ctx, "k", lims, 0, time.Second)
	require.NoError(t, err)
	near(t, start, 100*time.Millisecond, d3, "reserved")
	d4, err := s.Reserve(ctx, "k", lims, 0, time.Second)
	require.NoError(t, err)
	near(t, start, 200*time.Millisecond, d4, "the next one after it")
}

// Several windows decide together, as the local limiter's do
// (ratelimit's TestSeveralWindowsPerKey): 2 at once, then one every 200ms
// until the minute's 10 are spent, then one every 6s.
func TestSeveralWindowsDecideTogether(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, newClient(t))
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 5, Period: time.Second, Burst: 2}, {Rate: 10, Period: time.Minute, Burst: 10}}
	want := []time.Duration{0, 0, 200, 400, 600, 800, 1000, 1200, 1400, 1600, 6000, 12000}
	start := time.Now()
	for i, w := range want {
		d, err := s.Reserve(ctx, "k", lims, 0, time.Hour)
		require.NoError(t, err)
		near(t, start, w*time.Millisecond, d, fmt.Sprint("request ", i))
	}
}

// A request that goes later takes its budget then.
func TestReserveAfter(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, newClient(t))
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 10, Period: time.Second, Burst: 1}}
	start := time.Now()
	d, err := s.Reserve(ctx, "k", lims, 300*time.Millisecond, time.Second)
	require.NoError(t, err)
	near(t, start, 300*time.Millisecond, d, "goes when asked")
	d, err = s.Reserve(ctx, "k", lims, 0, time.Second)
	require.NoError(t, err)
	near(t, start, 400*time.Millisecond, d, "the next one interval after it")
	d, err = s.Reserve(ctx, "k", lims, time.Second, 500*time.Millisecond)
	require.NoError(t, err)
	near(t, start, time.Second, d, "over maxWait: refused")
	d, err = s.Reserve(ctx, "k", lims, 0, time.Second)
	require.NoError(t, err)
	near(t, start, 500*time.Millisecond, d, "the refusal took nothing")
}

// A key's windows, its pause and its announced limit live in one hash, so
// one slot of a Cluster; the hash expires.
func TestAKeyIsOneHashThatExpires(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	s, p := newStore(t, c)
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 5, Period: time.Second, Burst: 2}, {Rate: 100, Period: time.Minute, Burst: 100}}
	_, err := s.Reserve(ctx, "acct:1", lims, 0, 0)
	require.NoError(t, err)
	require.NoError(t, s.Pause(ctx, "acct:1", time.Second))
	require.NoError(t, s.Learn(ctx, "acct:1", ratelimit.Limit{Rate: 1, Period: time.Second, Burst: 1}, 2*time.Second, time.Millisecond))
	keys, err := c.Keys(ctx, p+"*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{p + "{acct:1}"}, keys)
	fields, err := c.HKeys(ctx, p+"{acct:1}").Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"w200000:200000", "w600000:59400000", "p", "le", "lb", "lt", "lu", "la"}, fields)
	ttl, err := c.PTTL(ctx, p+"{acct:1}").Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, time.Second)
	assert.LessOrEqual(t, ttl, 2*time.Minute)
}

// A pause holds the key, then the shortest window starts with nothing saved
// up: the waiting requests go one interval apart.
func TestPauseHoldsThenPaces(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, newClient(t))
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 10, Period: time.Second, Burst: 5}}
	start := time.Now()
	require.NoError(t, s.Pause(ctx, "k", 300*time.Millisecond))
	for i := range 3 {
		d, err := s.Reserve(ctx, "k", lims, 0, time.Second)
		require.NoError(t, err)
		near(t, start, 300*time.Millisecond+time.Duration(i)*100*time.Millisecond, d, "after the pause")
	}
	// Pause(0) empties the shortest window now.
	s2, _ := newStore(t, newClient(t))
	start = time.Now()
	require.NoError(t, s2.Pause(ctx, "k", 0))
	d, err := s2.Reserve(ctx, "k", lims, 0, time.Second)
	require.NoError(t, err)
	near(t, start, 0, d, "the first goes")
	d, err = s2.Reserve(ctx, "k", lims, 0, time.Second)
	require.NoError(t, err)
	near(t, start, 100*time.Millisecond, d, "the burst was emptied")
}

// An announced limit narrows the windows; a concurrent lower one wins, a
// concurrent higher one is ignored, a later one replaces it.
func TestLearnLowestRemainingWins(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, newClient(t))
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 1000, Period: time.Second, Burst: 100}}
	delayAfter := func(key string) time.Duration {
		d, err := s.Reserve(ctx, key, lims, 0, time.Hour)
		require.NoError(t, err)
		return d
	}
	lim := func(r int) ratelimit.Limit { return ratelimit.Limit{Rate: r, Period: 10 * time.Second, Burst: 1} }

	start := time.Now()
	require.NoError(t, s.Learn(ctx, "a", lim(50), 10*time.Second, time.Second))
	require.NoError(t, s.Learn(ctx, "a", lim(20), 10*time.Second, time.Second)) // in flight together: lower wins
	require.NoError(t, s.Learn(ctx, "a", lim(40), 10*time.Second, time.Second)) // in flight together: higher ignored
	near(t, start, 500*time.Millisecond, delayAfter("a"), "20 per 10s, nothing saved up")
	near(t, start, time.Second, delayAfter("a"), "then one every 500ms")

	require.NoError(t, s.Learn(ctx, "b", lim(20), 10*time.Second, time.Second))
	time.Sleep(20 * time.Millisecond)
	start = time.Now()
	require.NoError(t, s.Learn(ctx, "b", lim(100), 10*time.Second, time.Millisecond)) // sent after: replaces
	near(t, start, 100*time.Millisecond, delayAfter("b"), "100 per 10s")

	// An announcement ends.
	require.NoError(t, s.Learn(ctx, "c", lim(1), 200*time.Millisecond, time.Millisecond))
	time.Sleep(250 * time.Millisecond)
	near(t, start, 0, delayAfter("c"), "after its end only the windows hold")
}

// A Redis that hangs fails a decision within the timeout.
func TestHungRedisFailsWithinTheTimeout(t *testing.T) {
	t.Parallel()
	r := testserver.StartRedis(t)
	proxy := testserver.NewProxy(t, r.Addr())
	s, _ := newStore(t, newClient(t, "redis://"+proxy.Addr()+"/0"), redislimit.WithTimeout(50*time.Millisecond))
	ctx := context.Background()
	lims := []ratelimit.Limit{{Rate: 10, Period: time.Second, Burst: 3}}
	_, err := s.Reserve(ctx, "k", lims, 0, 0)
	require.NoError(t, err)
	proxy.Hang()
	start := time.Now()
	_, err = s.Reserve(ctx, "k", lims, 0, 0)
	took := time.Since(start)
	assert.Error(t, err)
	assert.Less(t, took, 500*time.Millisecond, "bounded by WithTimeout, not the client's read timeout")
	proxy.Restore()
}
