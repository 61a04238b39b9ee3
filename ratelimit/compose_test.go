package ratelimit_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/retry"
)

// stack is an outbound client in the documented order: ratelimit, retry,
// breaker, base; it counts retries and breaker transitions. The breaker
// opens on the first failure it counts, so a failure shows as a transition.
type stack struct {
	lim         *ratelimit.Limiter
	client      *http.Client
	retries     atomic.Int64
	transitions atomic.Int64
}

func newStack(t *testing.T, lim *ratelimit.Limiter, attemptTimeout time.Duration) *stack {
	t.Helper()
	s := &stack{lim: lim}
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	cb, err := breaker.NewTransport(base,
		breaker.WithConsecutiveFailures(1),
		breaker.WithLogger(quiet),
		breaker.WithStateHook(func(breaker.Transition) { s.transitions.Add(1) }))
	require.NoError(t, err)
	policy, err := retry.New(
		retry.WithAttemptTimeout(attemptTimeout),
		retry.WithLogger(quiet),
		retry.WithOnRetry(func(context.Context, int, error, time.Duration) { s.retries.Add(1) }))
	require.NoError(t, err)
	rt, err := retry.NewTransport(cb, policy)
	require.NoError(t, err)
	lt, err := ratelimit.NewTransport(rt, lim)
	require.NoError(t, err)
	s.client = &http.Client{Transport: lt}
	return s
}

func (s *stack) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// hits records when the provider stub was called.
type hits struct {
	mu sync.Mutex
	at []time.Time
}

func (h *hits) add() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at = append(h.at, time.Now())
	return len(h.at)
}

func (h *hits) times() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at...)
}

// Item 4: a wait for the quota longer than the attempt timeout is not an
// attempt timeout, not a breaker failure and not a spent retry.
func TestQuotaWaitIsNeitherAttemptTimeoutNorBreakerFailureNorRetry(t *testing.T) {
	t.Parallel()
	var h hits
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.add() }))
	defer srv.Close()
	lim := newLimiter(t, ratelimit.WithLimit(1, time.Second, 1))
	s := newStack(t, lim, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := s.get(ctx, srv.URL) // spends the burst
	require.NoError(t, err)
	start := time.Now()
	resp, err := s.get(ctx, srv.URL) // waits about a second: ten attempt timeouts
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond, "it waited for the quota")
	assert.Zero(t, s.retries.Load(), "no retry")
	assert.Zero(t, s.transitions.Load(), "no breaker failure")
	assert.Len(t, h.times(), 2, "one request per call")

	// A deadline shorter than the wait: the error at once, nothing sent.
	short, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	start = time.Now()
	_, err = s.get(short, srv.URL)
	var le *ratelimit.LimitedError
	require.ErrorAs(t, err, &le)
	assert.Less(t, time.Since(start), 250*time.Millisecond, "at once: before the 300ms deadline")
	assert.InDelta(t, float64(time.Second), float64(le.RetryAfter()), float64(100*time.Millisecond))
	assert.Zero(t, s.retries.Load())
	assert.Zero(t, s.transitions.Load())
	assert.Len(t, h.times(), 2, "nothing sent")
}

// Item 4: a 429 from the provider is retried after its delay and never
// counted as a failure by the breaker.
func TestA429IsRetriedAfterItsDelayAndNotCountedByTheBreaker(t *testing.T) {
	t.Parallel()
	var h hits
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.add() == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	lim := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10))
	s := newStack(t, lim, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := s.get(ctx, srv.URL)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	at := h.times()
	require.Len(t, at, 2)
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), time.Second, "retried after its Retry-After")
	assert.EqualValues(t, 1, s.retries.Load())
	assert.Zero(t, s.transitions.Load(), "the 429 is not a breaker failure")
}

// When retry gives up on a 429 (its Retry-After is longer than retry
// allows), the limiter stops the key for it: the next call fails at once,
// without reaching the provider.
func TestRetryGivingUpOnA429StopsTheKey(t *testing.T) {
	t.Parallel()
	var h hits
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.add()
		w.Header().Set("Retry-After", "45")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	lim := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10))
	s := newStack(t, lim, 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := s.get(ctx, srv.URL)
	var rae *retry.RetryAfterError
	require.ErrorAs(t, err, &rae, "retry gave up: 45s is beyond the deadline")
	_, err = s.get(ctx, srv.URL)
	var le *ratelimit.LimitedError
	require.ErrorAs(t, err, &le)
	assert.InDelta(t, float64(45*time.Second), float64(le.Delay), float64(time.Second))
	assert.Len(t, h.times(), 1, "the provider was asked once")
	assert.False(t, errors.Is(err, retry.ErrGaveUp), "the limiter refused before retry")
	assert.Zero(t, s.transitions.Load())
}
