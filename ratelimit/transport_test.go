package ratelimit_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/ratelimit"
)

// fakeNext answers every request with resp, counting them.
type fakeNext struct {
	resp  func() *http.Response
	calls atomic.Int64
}

func (f *fakeNext) RoundTrip(*http.Request) (*http.Response, error) {
	f.calls.Add(1)
	return f.resp(), nil
}

type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error { b.closed.Store(true); return nil }

func keyState(l *ratelimit.Limiter, key string) (ratelimit.KeyState, bool) {
	for k, st := range l.Keys() {
		if k == key {
			return st, true
		}
	}
	return ratelimit.KeyState{}, false
}

// The Transport learns from each response, keyed by host unless WithKey
// says otherwise.
func TestTransportLearnsFromResponses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		next := &fakeNext{resp: func() *http.Response {
			return response(200, "X-RateLimit-Remaining", "5", "X-RateLimit-Reset", "10")
		}}
		lim := newLimiter(t, ratelimit.WithLimit(100, time.Second, 10))
		tr, err := ratelimit.NewTransport(next, lim)
		require.NoError(t, err)
		req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/v1/x", nil)
		_, err = tr.RoundTrip(req)
		require.NoError(t, err)
		st, ok := keyState(lim, "api.example.com")
		require.True(t, ok)
		assert.Equal(t, ratelimit.KeyState{Rate: 0.5, Announced: true}, st)

		byAccount, err := ratelimit.NewTransport(next, lim, ratelimit.WithKey(func(r *http.Request) string { return r.Header.Get("Account") }))
		require.NoError(t, err)
		req.Header.Set("Account", "acct_9")
		_, err = byAccount.RoundTrip(req)
		require.NoError(t, err)
		_, ok = keyState(lim, "acct_9")
		assert.True(t, ok)

		next.resp = func() *http.Response { return response(429, "Retry-After", "7") }
		_, err = tr.RoundTrip(req)
		require.NoError(t, err, "the 429 is returned to the layer above")
		st, _ = keyState(lim, "api.example.com")
		assert.Equal(t, 7*time.Second, st.Paused)
	})
}

// A request whose wait outlasts its deadline is refused without being sent,
// and its body is closed, as a RoundTripper must.
func TestTransportRefusesWithoutSending(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		next := &fakeNext{resp: func() *http.Response { return response(200) }}
		lim := newLimiter(t, ratelimit.WithLimit(1, time.Second, 1))
		tr, err := ratelimit.NewTransport(next, lim)
		require.NoError(t, err)
		client := &http.Client{Transport: tr}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.example.com/", nil)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()

		body := &trackedBody{Reader: strings.NewReader("x")}
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, "https://api.example.com/", body)
		_, err = client.Do(req)
		var le *ratelimit.LimitedError
		require.ErrorAs(t, err, &le, "http.Client's *url.Error unwraps to it")
		assert.True(t, errors.Is(err, ratelimit.ErrLimited))
		assert.Equal(t, time.Second, le.Delay)
		assert.EqualValues(t, 1, next.calls.Load(), "not sent")
		assert.True(t, body.closed.Load(), "the body is closed")
	})
}

// On the path where a token is available, the Transport allocates nothing
// beyond what the limiter and the next RoundTripper do.
func TestTransportAddsNoAllocation(t *testing.T) {
	resp := response(200)
	next := &fakeNext{resp: func() *http.Response { return resp }}
	lim := newLimiter(t, ratelimit.WithLimit(1_000_000, time.Second, 1_000_000))
	tr, err := ratelimit.NewTransport(next, lim)
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/", nil)
	ctx := req.Context()
	alone := testing.AllocsPerRun(1000, func() {
		_ = lim.Wait(ctx, "api.example.com")
		_, _ = next.RoundTrip(req)
	})
	through := testing.AllocsPerRun(1000, func() { _, _ = tr.RoundTrip(req) })
	assert.Equal(t, alone, through)
	assert.Zero(t, through)
}
