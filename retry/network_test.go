package retry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/internal/testserver"
	"github.com/steadfast-go/steadfast/retry"
)

// These tests put real net/http errors through the Transport: a partner
// behind a TCP proxy that cuts or hangs connections, and a port nobody
// listens on.

func newPartner(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, &served
}

func TestTransportThroughACutConnection(t *testing.T) {
	t.Parallel()
	srv, served := newPartner(t)
	tests := []struct {
		name     string
		method   string
		key      string
		attempts int64
		ok       bool
	}{
		{"GET is retried", http.MethodGet, "", 2, true},
		{"POST with a key is retried", http.MethodPost, "k-1", 2, true},
		{"POST without a key is not", http.MethodPost, "", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := testserver.NewProxy(t, strings.TrimPrefix(srv.URL, "http://"))
			base, dials := newBase(t)
			base.DisableKeepAlives = true
			proxy.Cut() // connections are accepted, then closed before any answer
			tr := newTransport(t, base, append([]retry.Option{
				retry.WithOnRetry(func(context.Context, int, error, time.Duration) { proxy.Restore() }),
			}, fast...))
			before := served.Load()
			req := mustRequest(t, context.Background(), tt.method, "http://"+proxy.Addr()+"/charges", strings.NewReader("{}"))
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			assert.Equal(t, tt.attempts, dials.Load(), "attempts (error: %v)", err)
			if !tt.ok {
				require.Error(t, err)
				assert.NotErrorIs(t, err, retry.ErrGaveUp)
				assert.Equal(t, before, served.Load())
				return
			}
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, "ok", string(b))
			assert.Equal(t, before+1, served.Load())
		})
	}
}

func TestTransportCutsOffAHungPartner(t *testing.T) {
	t.Parallel()
	srv, served := newPartner(t)
	proxy := testserver.NewProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	proxy.Hang()
	base, _ := newBase(t)
	var hookErr error
	// Real time (the partner is a real server): the hung attempt is cut off
	// after half a second; the next one, forwarded again, answers at once.
	tr := newTransport(t, base, []retry.Option{
		retry.WithAttemptTimeout(500 * time.Millisecond), retry.WithBackoff(time.Millisecond, time.Millisecond),
		retry.WithOnRetry(func(_ context.Context, _ int, err error, _ time.Duration) {
			if hookErr == nil {
				hookErr = err
			}
			proxy.Restore()
		}),
	})
	resp, err := (&http.Client{Transport: tr}).Get("http://" + proxy.Addr() + "/slow")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "ok", string(b))
	assert.ErrorIs(t, hookErr, retry.ErrAttemptTimeout, "the hung attempt was cut off by its own timeout")
	// The hung attempt's bytes may still reach the partner once the proxy
	// forwards again: that is why only idempotent or keyed requests are
	// retried.
	assert.GreaterOrEqual(t, served.Load(), int64(1))
}

func TestTransportRetriesARefusedDialForAnyMethod(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	base, dials := newBase(t)
	tr := newTransport(t, base, append([]retry.Option{retry.WithMaxAttempts(3)}, fast...))
	_, err = (&http.Client{Transport: tr}).Post("http://"+addr+"/charges", "application/json", strings.NewReader("{}"))
	assert.ErrorIs(t, err, retry.ErrAttemptsExhausted)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Equal(t, int64(3), dials.Load())
}
