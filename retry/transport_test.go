package retry_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/retry"
)

// step is one scripted outcome of an attempt.
type step struct {
	status int
	header http.Header
	body   string
	err    error
	// slow makes the attempt hang until its context ends (by the per-attempt
	// timeout) or slow has passed, and then until its context ends.
	slow time.Duration
}

// recorded is what a scripted transport saw of one attempt.
type recorded struct {
	method string
	header http.Header
	body   []byte
	at     time.Time
	ctx    context.Context
}

// scripted is an http.RoundTripper that plays steps in order (the last one
// repeats) and records the requests and the response bodies it handed out.
type scripted struct {
	mu     sync.Mutex
	steps  []step
	reqs   []recorded
	bodies []*trackedBody
}

func (s *scripted) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	s.mu.Lock()
	i := min(len(s.reqs), len(s.steps)-1)
	st := s.steps[i]
	s.reqs = append(s.reqs, recorded{method: r.Method, header: r.Header.Clone(), body: body, at: time.Now(), ctx: r.Context()})
	s.mu.Unlock()
	if st.slow > 0 {
		select {
		case <-time.After(st.slow):
		case <-r.Context().Done():
		}
		<-r.Context().Done()
		return nil, context.Cause(r.Context())
	}
	if st.err != nil {
		return nil, st.err
	}
	tb := &trackedBody{r: strings.NewReader(st.body)}
	s.mu.Lock()
	s.bodies = append(s.bodies, tb)
	s.mu.Unlock()
	h := st.header
	if h == nil {
		h = make(http.Header)
	}
	return &http.Response{StatusCode: st.status, Status: strconv.Itoa(st.status) + " " + http.StatusText(st.status),
		Header: h, Body: tb, Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

func (s *scripted) attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

func (s *scripted) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

type trackedBody struct {
	mu     sync.Mutex
	r      *strings.Reader
	eof    bool
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func (b *trackedBody) drainedAndClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof && b.closed
}

// newTransport returns a Transport over next with a Policy (3 attempts, no
// budget unless popts set one) and the transport options topts.
func newTransport(t *testing.T, next http.RoundTripper, popts []retry.Option, topts ...retry.Option) *retry.Transport {
	t.Helper()
	p := newPolicy(t, append([]retry.Option{retry.WithMaxAttempts(3)}, popts...)...)
	tr, err := retry.NewTransport(next, p, topts...)
	require.NoError(t, err)
	return tr
}

func mustRequest(t *testing.T, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	require.NoError(t, err)
	return req
}

func TestTransportGET503Then200(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		next := &scripted{steps: []step{{status: 503, body: "busy, try later"}, {status: 200, body: "ok"}}}
		client := &http.Client{Transport: newTransport(t, next, []retry.Option{sl.option()})}
		resp, err := client.Get("http://api.example/items")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		assert.Equal(t, "ok", string(b))
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, 2, next.attempts())
		assert.True(t, next.bodies[0].drainedAndClosed(), "the 503's body is drained and closed")
		assert.Len(t, sl.Sleeps(), 1)
		assert.Equal(t, sum(sl.Sleeps()), sl.Elapsed())
	})
}

// noGetBody is a body that http.NewRequest cannot rewind.
type noGetBody struct{ io.Reader }

func TestTransportRetriesOnlyWhatIsSafe(t *testing.T) {
	t.Parallel()
	const payload = `{"amount":100}`
	tests := []struct {
		name     string
		method   string
		header   map[string]string
		body     func() io.Reader
		topts    []retry.Option
		steps    []step
		attempts int
		wantErr  error // nil: a response
		status   int
	}{
		{name: "POST without a key, 503: one attempt", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			steps: []step{{status: 503}, {status: 200}}, attempts: 1, status: 503},
		{name: "POST with Idempotency-Key, 503: retried", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			header: map[string]string{"Idempotency-Key": "k-123"},
			steps:  []step{{status: 503}, {status: 200}}, attempts: 2, status: 200},
		{name: "POST with a configured webhook-id: retried", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			header: map[string]string{"webhook-id": "msg_1"}, topts: []retry.Option{retry.WithKeyHeaders("webhook-id")},
			steps: []step{{status: 502}, {status: 200}}, attempts: 2, status: 200},
		{name: "Idempotency-Key is not a key once others are configured", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			header: map[string]string{"Idempotency-Key": "k"}, topts: []retry.Option{retry.WithKeyHeaders("webhook-id")},
			steps: []step{{status: 503}, {status: 200}}, attempts: 1, status: 503},
		{name: "empty key: not a key", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			header: map[string]string{"Idempotency-Key": ""},
			steps:  []step{{status: 503}, {status: 200}}, attempts: 1, status: 503},
		{name: "PUT is not retried by default", method: "PUT", body: func() io.Reader { return strings.NewReader(payload) },
			steps: []step{{status: 503}, {status: 200}}, attempts: 1, status: 503},
		{name: "PUT opted in", method: "PUT", body: func() io.Reader { return strings.NewReader(payload) },
			topts: []retry.Option{retry.WithIdempotentMethods(http.MethodPut, http.MethodDelete)},
			steps: []step{{status: 503}, {status: 200}}, attempts: 2, status: 200},
		{name: "DELETE opted in", method: "DELETE",
			topts: []retry.Option{retry.WithIdempotentMethods(http.MethodPut, http.MethodDelete)},
			steps: []step{{status: 504}, {status: 204}}, attempts: 2, status: 204},
		{name: "body without GetBody: no retry, clear error", method: "POST",
			body:   func() io.Reader { return noGetBody{strings.NewReader(payload)} },
			header: map[string]string{"Idempotency-Key": "k-1"},
			steps:  []step{{status: 503}, {status: 200}}, attempts: 1, wantErr: retry.ErrBodyNotRewindable, status: 503},
		{name: "dial error: retried for a POST without a key", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			steps:    []step{{err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}, {status: 201}},
			attempts: 2, status: 201},
		{name: "connection reset after sending: a POST without a key is not retried", method: "POST", body: func() io.Reader { return strings.NewReader(payload) },
			steps:    []step{{err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, {status: 201}},
			attempts: 1, wantErr: syscall.ECONNRESET},
		{name: "connection reset: a GET is retried", method: "GET",
			steps:    []step{{err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, {err: io.ErrUnexpectedEOF}, {status: 200}},
			attempts: 3, status: 200},
		{name: "an invalid header value: sent once", method: "GET", header: map[string]string{"X-Trace": "a\nb"},
			steps: []step{{status: 503}, {status: 200}}, attempts: 1, status: 503},
		{name: "an invalid header name: sent once", method: "GET", header: map[string]string{"X Trace": "a"},
			steps: []step{{status: 503}, {status: 200}}, attempts: 1, status: 503},
		{name: "a server that closed the connection (untyped net/http error): a GET is retried", method: "GET",
			steps: []step{{err: errors.New("http: server closed idle connection")}, {status: 200}}, attempts: 2, status: 200},
		{name: "a TLS alert is not retried", method: "GET",
			steps: []step{{err: tls.AlertError(40)}, {status: 200}}, attempts: 1, wantErr: tls.AlertError(40)},
		{name: "a permanent error is not retried", method: "GET",
			steps:    []step{{err: retry.Permanent(&net.OpError{Op: "read", Err: syscall.ECONNRESET})}, {status: 200}},
			attempts: 1, wantErr: syscall.ECONNRESET},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				next := &scripted{steps: tt.steps}
				client := &http.Client{Transport: newTransport(t, next, nil, tt.topts...)}
				var body io.Reader
				if tt.body != nil {
					body = tt.body()
				}
				req := mustRequest(t, context.Background(), tt.method, "http://api.example/charges", body)
				for k, v := range tt.header {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				assert.Equal(t, tt.attempts, next.attempts(), "attempts")
				if tt.wantErr != nil {
					require.Error(t, err)
					if tt.wantErr.Error() != "" {
						assert.ErrorIs(t, err, tt.wantErr)
					}
					if tt.status != 0 {
						var g *retry.GaveUpError
						require.ErrorAs(t, err, &g)
						assert.Equal(t, tt.status, g.LastStatus)
						assert.Equal(t, tt.attempts, g.Attempts)
					}
					for _, b := range next.bodies {
						assert.True(t, b.drainedAndClosed())
					}
					return
				}
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, tt.status, resp.StatusCode)
				reqs := next.requests()
				for _, r := range reqs[1:] {
					assert.Equal(t, reqs[0].body, r.body, "identical body bytes on every attempt")
					for k := range tt.header {
						assert.Equal(t, reqs[0].header.Get(k), r.header.Get(k), "identical key on every attempt")
					}
				}
				if tt.body != nil && tt.attempts > 1 {
					assert.Equal(t, payload, string(reqs[len(reqs)-1].body))
				}
			})
		})
	}
}

func TestTransportAttachesOneIdempotencyKeyPerCall(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		next := &scripted{steps: []step{{status: 503}, {status: 429}, {status: 201}}}
		client := &http.Client{Transport: newTransport(t, next, nil, retry.WithAutoIdempotencyKey())}
		req := mustRequest(t, context.Background(), "POST", "http://api.example/charges", strings.NewReader("x"))
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 201, resp.StatusCode)
		assert.Empty(t, req.Header.Get("Idempotency-Key"), "the caller's request is not modified")
		reqs := next.requests()
		require.Len(t, reqs, 3)
		key := reqs[0].header.Get("Idempotency-Key")
		_, err = uuid.Parse(key)
		require.NoError(t, err, "a UUID: %q", key)
		for _, r := range reqs {
			assert.Equal(t, key, r.header.Get("Idempotency-Key"))
			assert.Equal(t, "x", string(r.body))
		}

		// A second call gets a key of its own; a caller's key is kept.
		req2 := mustRequest(t, context.Background(), "PATCH", "http://api.example/charges/1", strings.NewReader("y"))
		resp, err = client.Do(req2)
		require.NoError(t, err)
		resp.Body.Close()
		assert.NotEqual(t, key, next.requests()[3].header.Get("Idempotency-Key"))
		req3 := mustRequest(t, context.Background(), "POST", "http://api.example/charges", nil)
		req3.Header.Set("Idempotency-Key", "mine")
		resp, err = client.Do(req3)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "mine", next.requests()[4].header.Get("Idempotency-Key"))
	})
}

func TestTransportStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status  int
		method  string
		header  string
		retried bool
	}{
		{400, "GET", "", false}, {401, "GET", "", false}, {403, "GET", "", false},
		{404, "GET", "", false}, {409, "GET", "", false}, {422, "GET", "", false},
		{501, "GET", "", false}, {505, "GET", "", false}, {302, "GET", "", false},
		{408, "GET", "", true}, {429, "GET", "", true}, {502, "GET", "", true},
		{503, "GET", "", true}, {504, "GET", "", true}, {500, "GET", "", true},
		{500, "HEAD", "", true}, {500, "POST", "k", false}, {503, "POST", "k", true},
		{501, "POST", "k", false}, {429, "POST", "k", true},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+strconv.Itoa(tt.status), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				next := &scripted{steps: []step{{status: tt.status, body: "oops"}}}
				client := &http.Client{
					Transport:     newTransport(t, next, nil),
					CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
				}
				req := mustRequest(t, context.Background(), tt.method, "http://api.example/x", nil)
				if tt.header != "" {
					req.Header.Set("Idempotency-Key", tt.header)
				}
				resp, err := client.Do(req)
				if !tt.retried {
					require.NoError(t, err)
					resp.Body.Close()
					assert.Equal(t, tt.status, resp.StatusCode)
					assert.Equal(t, 1, next.attempts())
					return
				}
				assert.Nil(t, resp)
				assert.Equal(t, 3, next.attempts())
				assert.ErrorIs(t, err, retry.ErrGaveUp)
				var g *retry.GaveUpError
				require.ErrorAs(t, err, &g)
				assert.Equal(t, tt.status, g.LastStatus)
				assert.Equal(t, 3, g.Attempts)
				var se *retry.StatusError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, tt.status, se.StatusCode)
				for _, b := range next.bodies {
					assert.True(t, b.drainedAndClosed())
				}
			})
		})
	}
}

func TestTransportRetryAfter(t *testing.T) {
	t.Parallel()
	// A synctest bubble starts at a whole second, so HTTP dates (seconds) are
	// exact.
	date := func(layout string, d time.Duration) func(time.Time) string {
		return func(start time.Time) string { return start.Add(d).UTC().Format(layout) }
	}
	value := func(v string) func(time.Time) string { return func(time.Time) string { return v } }
	tests := []struct {
		name   string
		status int
		value  func(start time.Time) string
		wait   time.Duration
	}{
		{"delta-seconds", 429, value("2"), 2 * time.Second},
		{"IMF-fixdate", 503, date(http.TimeFormat, 3*time.Second), 3 * time.Second},
		{"RFC 850", 503, date("Monday, 02-Jan-06 15:04:05 GMT", 3*time.Second), 3 * time.Second},
		{"asctime", 429, date(time.ANSIC, 3*time.Second), 3 * time.Second},
		{"date in the past", 429, date(http.TimeFormat, -time.Hour), 0},
		{"negative: backoff", 429, value("-2"), 500 * time.Millisecond},
		{"fraction: backoff", 429, value("1.5"), 500 * time.Millisecond},
		{"garbage: backoff", 503, value("soon"), 500 * time.Millisecond},
		{"ignored on 502", 502, value("2"), 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				sl := newSleeps()
				next := &scripted{steps: []step{{status: tt.status, header: http.Header{"Retry-After": {tt.value(time.Now())}}}, {status: 200}}}
				client := &http.Client{Transport: newTransport(t, next,
					[]retry.Option{retry.WithBackoff(time.Second, time.Second), retry.WithJitterSource(constRand(0.5)), sl.option()})}
				resp, err := client.Get("http://api.example/x")
				require.NoError(t, err)
				resp.Body.Close()
				reqs := next.requests()
				require.Len(t, reqs, 2)
				assert.GreaterOrEqual(t, reqs[1].at.Sub(reqs[0].at), tt.wait, "the next attempt comes no sooner")
				if tt.wait > 0 {
					assert.Equal(t, []time.Duration{tt.wait}, sl.Sleeps())
				} else {
					assert.Equal(t, []time.Duration{0}, sl.Sleeps(), "announced, not slept")
				}
				assert.Equal(t, tt.wait, sl.Elapsed())
			})
		})
	}
}

func TestTransportRetryAfterBeyondTheLimitFailsAtOnce(t *testing.T) {
	t.Parallel()
	t.Run("beyond the cap", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			sl := newSleeps()
			next := &scripted{steps: []step{{status: 429, header: http.Header{"Retry-After": {"120"}}, body: "slow down"}, {status: 200}}}
			client := &http.Client{Transport: newTransport(t, next, []retry.Option{retry.WithMaxRetryAfter(30 * time.Second), sl.option()})}
			resp, err := client.Get("http://api.example/x")
			assert.Nil(t, resp)
			assertRetryAfterError(t, err, 2*time.Minute, 30*time.Second)
			var g *retry.GaveUpError
			require.ErrorAs(t, err, &g)
			assert.Equal(t, 429, g.LastStatus)
			assert.Equal(t, 1, next.attempts())
			assert.Empty(t, sl.Sleeps(), "no sleep")
			assert.Zero(t, sl.Elapsed(), "no sleep")
			assert.True(t, next.bodies[0].drainedAndClosed())
		})
	})
	t.Run("beyond the deadline", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			sl := newSleeps()
			next := &scripted{steps: []step{{status: 503, header: http.Header{"Retry-After": {"10"}}}, {status: 200}}}
			client := &http.Client{Transport: newTransport(t, next, []retry.Option{sl.option()})}
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(5*time.Second))
			defer cancel()
			resp, err := client.Do(mustRequest(t, ctx, "GET", "http://api.example/x", nil))
			assert.Nil(t, resp)
			var rae *retry.RetryAfterError
			require.ErrorAs(t, err, &rae)
			assert.Equal(t, 10*time.Second, rae.Delay)
			assert.LessOrEqual(t, rae.Limit, 5*time.Second)
			assert.Equal(t, 1, next.attempts())
			assert.Empty(t, sl.Sleeps())
			assert.Zero(t, sl.Elapsed())
		})
	})
}

func TestTransportCancelDuringWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		sl := newSleeps()
		next := &scripted{steps: []step{{status: 503, body: "down"}}}
		client := &http.Client{Transport: newTransport(t, next, []retry.Option{
			retry.WithBackoff(time.Minute, time.Minute), retry.WithJitterSource(constRand(0.5)), sl.option()})}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			resp, err := client.Do(mustRequest(t, ctx, "GET", "http://api.example/x", nil))
			if resp != nil {
				resp.Body.Close()
			}
			done <- err
		}()
		synctest.Wait()
		assert.Equal(t, []time.Duration{30 * time.Second}, sl.Sleeps())
		cancel()
		err := <-done
		assert.Zero(t, sl.Elapsed(), "the cancellation ended the wait")
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, next.attempts(), "no attempt after the cancellation")
		assert.True(t, next.bodies[0].drainedAndClosed())
	})
}

func TestTransportPerAttemptTimeout(t *testing.T) {
	t.Parallel()
	t.Run("retried while the caller's context lives", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			var hookErr error
			next := &scripted{steps: []step{{slow: 5 * time.Second}, {status: 200, body: "ok"}}}
			client := &http.Client{Transport: newTransport(t, next, []retry.Option{
				retry.WithAttemptTimeout(time.Second),
				retry.WithOnRetry(func(_ context.Context, _ int, err error, _ time.Duration) { hookErr = err }),
			})}
			resp, err := client.Get("http://api.example/x")
			require.NoError(t, err)
			reqs := next.requests()
			require.Len(t, reqs, 2)
			assert.ErrorIs(t, hookErr, retry.ErrAttemptTimeout, "the error says it was the attempt's timeout")
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "ok", string(b))
			assert.NoError(t, reqs[1].ctx.Err(), "the attempt's context lives while the body is read")
			resp.Body.Close()
			assert.Error(t, reqs[1].ctx.Err(), "closing the body releases the attempt's context")
		})
	})
	t.Run("all attempts time out", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			next := &scripted{steps: []step{{slow: 5 * time.Second}}}
			client := &http.Client{Transport: newTransport(t, next, []retry.Option{retry.WithAttemptTimeout(time.Second)})}
			_, err := client.Get("http://api.example/x")
			assert.Equal(t, 3, next.attempts())
			assert.ErrorIs(t, err, retry.ErrGaveUp)
			assert.ErrorIs(t, err, retry.ErrAttemptTimeout)
		})
	})
	t.Run("a POST without a key that timed out is not retried", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			next := &scripted{steps: []step{{slow: 5 * time.Second}, {status: 200}}}
			client := &http.Client{Transport: newTransport(t, next, []retry.Option{retry.WithAttemptTimeout(time.Second)})}
			_, err := client.Post("http://api.example/x", "text/plain", strings.NewReader("x"))
			assert.Equal(t, 1, next.attempts())
			assert.ErrorIs(t, err, retry.ErrAttemptTimeout)
			assert.NotErrorIs(t, err, retry.ErrGaveUp)
		})
	})
}

// countingTransport counts the round trips that reach next.
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// fast is the Policy options of the tests that talk to real servers in real
// time: waits of at most a millisecond.
var fast = []retry.Option{retry.WithBackoff(time.Millisecond, time.Millisecond)}

// newBase returns an http.Transport of the test's own, whose dials are
// counted, closed when the test ends.
func newBase(t *testing.T) (*http.Transport, *atomic.Int64) {
	var dials atomic.Int64
	d := &net.Dialer{}
	base := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 100,
	}
	t.Cleanup(base.CloseIdleConnections)
	return base, &dials
}

func TestTransportDoesNotRetryCertificateSchemeOrRedirectErrors(t *testing.T) {
	t.Parallel()
	t.Run("certificate", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Config.ErrorLog = quietLog()
		defer srv.Close()
		base, dials := newBase(t)
		client := &http.Client{Transport: newTransport(t, base, fast)}
		_, err := client.Get(srv.URL)
		var cve *tls.CertificateVerificationError
		require.ErrorAs(t, err, &cve)
		assert.Equal(t, int64(1), dials.Load(), "one attempt")
	})
	t.Run("unsupported scheme", func(t *testing.T) {
		t.Parallel()
		base, _ := newBase(t)
		counting := &countingTransport{next: base}
		client := &http.Client{Transport: newTransport(t, counting, fast)}
		_, err := client.Get("gopher://api.example/x")
		require.Error(t, err)
		assert.Equal(t, int64(1), counting.n.Load())
	})
	t.Run("redirect limit", func(t *testing.T) {
		t.Parallel()
		var hits atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Redirect(w, r, "/again", http.StatusFound)
		}))
		defer srv.Close()
		base, _ := newBase(t)
		counting := &countingTransport{next: base}
		client := &http.Client{Transport: newTransport(t, counting, fast)}
		_, err := client.Get(srv.URL)
		require.Error(t, err)
		assert.NotErrorIs(t, err, retry.ErrGaveUp)
		assert.Equal(t, int64(10), hits.Load(), "one attempt per hop, up to the client's limit")
		assert.Equal(t, hits.Load(), counting.n.Load())
	})
}

func TestTransportBudgetPerHost(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const ratio, floor, requests = 0.2, 10, 1000
		var failing atomic.Bool
		failing.Store(true)
		next := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if failing.Load() {
				return &http.Response{StatusCode: 503, Body: http.NoBody, Header: http.Header{}}, nil
			}
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
		})
		counting := &countingTransport{next: next}
		tr := newTransport(t, counting, []retry.Option{
			retry.WithMaxAttempts(4), retry.WithBudget(ratio, floor, 10*time.Second), retry.WithLogger(quiet),
			retry.WithBackoff(time.Nanosecond, time.Nanosecond), // time almost stands still: one window
		})
		client := &http.Client{Transport: tr}
		get := func(host string) error {
			resp, err := client.Get("http://" + host + "/x")
			if err == nil {
				resp.Body.Close()
			}
			return err
		}
		refused := 0
		for range requests {
			err := get("a.example")
			require.ErrorIs(t, err, retry.ErrGaveUp)
			if errors.Is(err, retry.ErrBudgetExhausted) {
				refused++
			}
		}
		retries := counting.n.Load() - requests
		assert.LessOrEqual(t, retries, int64(ratio*requests+floor), "retries stay under ratio × requests + floor")
		assert.GreaterOrEqual(t, retries, int64(ratio*requests), "the budget lets the allowed retries through")
		assert.Positive(t, refused)

		// Another host has a budget of its own.
		before := counting.n.Load()
		require.ErrorIs(t, get("b.example"), retry.ErrAttemptsExhausted)
		assert.Equal(t, int64(4), counting.n.Load()-before)

		// Successes restore the budget.
		before = counting.n.Load()
		require.ErrorIs(t, get("a.example"), retry.ErrBudgetExhausted)
		assert.Equal(t, int64(1), counting.n.Load()-before, "exhausted: no retry")
		failing.Store(false)
		for range 100 {
			require.NoError(t, get("a.example"))
		}
		failing.Store(true)
		before = counting.n.Load()
		require.ErrorIs(t, get("a.example"), retry.ErrAttemptsExhausted)
		assert.Equal(t, int64(4), counting.n.Load()-before, "retries allowed again after successes")

		// So does time: the window slides past the old retries.
		for range 200 {
			_ = get("a.example")
		}
		before = counting.n.Load()
		require.ErrorIs(t, get("a.example"), retry.ErrBudgetExhausted)
		time.Sleep(10 * time.Second)
		before = counting.n.Load()
		require.ErrorIs(t, get("a.example"), retry.ErrAttemptsExhausted)
		assert.Equal(t, int64(4), counting.n.Load()-before, "retries allowed again once the window has passed")
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDoBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p, err := retry.New(retry.WithLogger(quiet), retry.WithBudget(0, 3, time.Second), retry.WithMaxAttempts(10),
			retry.WithBackoff(time.Nanosecond, time.Nanosecond))
		require.NoError(t, err)
		calls := 0
		err = retry.Do(context.Background(), p, func(context.Context) error { calls++; return errFlaky })
		assert.ErrorIs(t, err, retry.ErrBudgetExhausted)
		assert.Equal(t, 4, calls, "the floor: 3 retries")
		calls = 0
		err = retry.Do(context.Background(), p, func(context.Context) error { calls++; return errFlaky })
		assert.ErrorIs(t, err, retry.ErrBudgetExhausted)
		assert.Equal(t, 1, calls)
		time.Sleep(time.Second)
		calls = 0
		_ = retry.Do(context.Background(), p, func(context.Context) error { calls++; return errFlaky })
		assert.Equal(t, 4, calls, "a new window")
	})
}

func TestTransportSharedBy100Goroutines(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path]++
		first := seen[r.URL.Path] == 1
		mu.Unlock()
		if first { // each call fails once, then succeeds
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base, _ := newBase(t)
	p, err := retry.New(retry.WithMaxAttempts(10), retry.WithBudget(1, 100, time.Minute),
		retry.WithAttemptTimeout(time.Minute), retry.WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	tr, err := retry.NewTransport(base, p, retry.WithAutoIdempotencyKey())
	require.NoError(t, err)
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := range 100 {
		wg.Go(func() {
			for i := range 5 {
				var resp *http.Response
				var err error
				url := srv.URL + "/" + strconv.Itoa(g) + "/" + strconv.Itoa(i)
				if i%2 == 0 {
					resp, err = client.Get(url)
				} else {
					resp, err = client.Post(url, "text/plain", strings.NewReader("hello"))
				}
				if !assert.NoError(t, err) {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, "ok", string(b))
			}
		})
	}
	wg.Wait()
}

// TestTransportNeverOpensMoreConnectionsThanAttempts counts new connections
// on the server and dials on the client against the attempts made.
func TestTransportNeverOpensMoreConnectionsThanAttempts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		bodySize    int
		failures    int
		concurrency int
		reuse       bool // the drained connection must be reused
	}{
		{"small bodies", 100, 3, 1, true},
		{"bodies at the drain bound", 64 << 10, 3, 1, true},
		{"bodies beyond the drain bound", 1 << 20, 3, 1, false},
		{"concurrent calls", 1000, 2, 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var newConns, attempts atomic.Int64
			body := bytes.Repeat([]byte("x"), tt.bodySize)
			var mu sync.Mutex
			seen := map[string]int{}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				attempts.Add(1)
				mu.Lock()
				seen[r.URL.Path]++
				k := seen[r.URL.Path]
				mu.Unlock()
				if k <= tt.failures {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.WriteHeader(http.StatusServiceUnavailable)
					w.Write(body)
					return
				}
				io.WriteString(w, "ok")
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					newConns.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			base, dials := newBase(t)
			client := &http.Client{Transport: newTransport(t, base, append([]retry.Option{retry.WithMaxAttempts(tt.failures + 1)}, fast...))}
			var wg sync.WaitGroup
			for g := range tt.concurrency {
				wg.Go(func() {
					resp, err := client.Get(srv.URL + "/" + strconv.Itoa(g))
					if !assert.NoError(t, err) {
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				})
			}
			wg.Wait()
			assert.Equal(t, int64((tt.failures+1)*tt.concurrency), attempts.Load())
			assert.LessOrEqual(t, newConns.Load(), attempts.Load(), "new connections")
			assert.LessOrEqual(t, dials.Load(), attempts.Load(), "dials")
			if tt.reuse {
				assert.Equal(t, int64(1), dials.Load(), "a drained connection is reused")
			}
		})
	}
}

// idleCounting counts CloseIdleConnections calls.
type idleCounting struct {
	http.RoundTripper
	closes atomic.Int64
}

func (c *idleCounting) CloseIdleConnections() { c.closes.Add(1) }

func TestTransportNeverFlushesIdleConnectionsItself(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		next := &idleCounting{RoundTripper: &scripted{steps: []step{{status: 503}, {err: io.ErrUnexpectedEOF}, {status: 200}, {status: 503}}}}
		client := &http.Client{Transport: newTransport(t, next, nil)}
		resp, err := client.Get("http://api.example/x")
		require.NoError(t, err)
		resp.Body.Close()
		_, err = client.Get("http://api.example/x") // fails twice more, gives up
		require.Error(t, err)
		assert.Zero(t, next.closes.Load(), "retries and give-ups keep the pool")
		client.CloseIdleConnections()
		assert.Equal(t, int64(1), next.closes.Load(), "the caller's request reaches the base transport")
	})
}

func TestTransportBudgetHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	const ratio, floor, goroutines, perGoroutine = 0.1, 5, 50, 20
	next := &countingTransport{next: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 502, Body: http.NoBody, Header: http.Header{}}, nil
	})}
	tr := newTransport(t, next, []retry.Option{
		retry.WithMaxAttempts(5), retry.WithBudget(ratio, floor, time.Minute), retry.WithLogger(quiet),
		retry.WithBackoff(time.Nanosecond, time.Nanosecond),
	})
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range perGoroutine {
				_, err := client.Get("http://api.example/x")
				assert.ErrorIs(t, err, retry.ErrGaveUp)
			}
		})
	}
	wg.Wait()
	requests := int64(goroutines * perGoroutine)
	retries := next.n.Load() - requests
	assert.LessOrEqual(t, retries, int64(ratio*float64(requests)+floor))
	assert.Positive(t, retries)
}
