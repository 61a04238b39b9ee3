package breaker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/retry"
)

func newTransport(t *testing.T, opts ...breaker.Option) (*breaker.Transport, *http.Client) {
	t.Helper()
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	bt, err := breaker.NewTransport(base, append([]breaker.Option{breaker.WithLogger(quiet)}, opts...)...)
	require.NoError(t, err)
	return bt, &http.Client{Transport: bt}
}

func TestTransportCounts(t *testing.T) {
	t.Parallel()
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		case "/404":
			http.Error(w, "no", http.StatusNotFound)
		case "/429":
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case "/500":
			http.Error(w, "bug", http.StatusInternalServerError)
		case "/503":
			w.Header().Set("Retry-After", "7")
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close() // nothing listens there any more: connection refused

	tests := []struct {
		name    string
		url     string
		ctx     func() (context.Context, context.CancelFunc)
		counted bool
		status  int // status returned to the caller; 0: an error
	}{
		{"404", srv.URL + "/404", nil, false, 404},
		{"429", srv.URL + "/429", nil, false, 429},
		{"caller cancel", srv.URL + "/hang", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(10*time.Millisecond, cancel)
			return ctx, cancel
		}, false, 0},
		{"500", srv.URL + "/500", nil, true, 500},
		{"503", srv.URL + "/503", nil, true, 503},
		{"timeout", srv.URL + "/hang", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}, true, 0},
		{"transport error", deadURL + "/", nil, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bt, client := newTransport(t, breaker.WithConsecutiveFailures(3), breaker.WithOpenDuration(time.Hour))
			for range 3 {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if tt.ctx != nil {
					ctx, cancel = tt.ctx()
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tt.url, nil)
				resp, err := client.Do(req)
				cancel()
				if tt.status == 0 {
					require.Error(t, err)
					require.NotErrorIs(t, err, breaker.ErrOpen)
					continue
				}
				require.NoError(t, err)
				assert.Equal(t, tt.status, resp.StatusCode, "the response was not returned as it is")
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.NotEmpty(t, body)
			}
			host := strings.TrimPrefix(strings.TrimPrefix(tt.url, "http://"), "")
			host = host[:strings.Index(host, "/")]
			b, ok := bt.Group().Lookup(host)
			require.True(t, ok)
			want := breaker.Closed
			if tt.counted {
				want = breaker.Open
			}
			assert.Equal(t, want, b.State())
		})
	}
}

func TestTransportOpen(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(other.Close)

	_, client := newTransport(t, breaker.WithConsecutiveFailures(2), breaker.WithOpenDuration(time.Hour))
	for range 2 {
		resp, err := client.Get(srv.URL)
		require.NoError(t, err)
		resp.Body.Close()
	}
	body := &closeCounter{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
	_, err := client.Do(req)
	require.ErrorIs(t, err, breaker.ErrOpen)
	d, ok := retry.RetryAfter(err)
	require.True(t, ok)
	assert.Greater(t, d, 59*time.Minute)
	assert.Equal(t, int32(2), hits.Load(), "a request reached the server while the circuit was open")
	assert.True(t, body.closed.Load(), "the request body of a rejected request was not closed")

	// One breaker per host: the other host is unaffected.
	resp, err := client.Get(other.URL)
	require.NoError(t, err)
	resp.Body.Close()
}

type closeCounter struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeCounter) Close() error { c.closed.Store(true); return nil }

func TestTransportFallback(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "http://" + ln.Addr().String()
	ln.Close()

	var fallbacks atomic.Int32
	_, client := newTransport(t, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour),
		breaker.WithFallback(func(req *http.Request, err error) (*http.Response, error) {
			fallbacks.Add(1)
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("cached")), Request: req}, nil
		}))

	resp, err := client.Get(srv.URL) // a 5xx is returned as it is, and trips
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Zero(t, fallbacks.Load())

	resp, err = client.Get(srv.URL) // open: fallback
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "cached", string(body))
	assert.Equal(t, int32(1), fallbacks.Load())

	resp, err = client.Get(deadURL) // transport error: fallback
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int32(2), fallbacks.Load())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, deadURL, nil)
	_, err = client.Do(req) // caller cancel (the circuit is open too): no fallback
	require.Error(t, err)
	assert.Equal(t, int32(2), fallbacks.Load())
}

func TestTransportConcurrent(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			w.WriteHeader(http.StatusInternalServerError)
		case 1:
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, "body")
	}))
	t.Cleanup(srv.Close)
	_, client := newTransport(t, breaker.WithFailureRatio(0.2, 20), breaker.WithWindow(100*time.Millisecond, 4),
		breaker.WithOpenDuration(2*time.Millisecond), breaker.WithHalfOpenProbes(5))
	var ok, rejected atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			for range 30 {
				resp, err := client.Get(srv.URL)
				if err != nil {
					if !errors.Is(err, breaker.ErrOpen) {
						t.Error(err)
					}
					rejected.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(3000), ok.Load()+rejected.Load())
	assert.Equal(t, n.Load(), ok.Load(), "a rejected request reached the server, or a response was lost")
}
