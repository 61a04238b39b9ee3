package breaker

import (
	"context"
	"net/http"
)

// Transport is an http.RoundTripper that sends requests through one
// [Breaker] per host (or per key of [WithKeyFunc]), kept in a [Group].
//
// Transport errors and timeouts are failures (as the classifier of
// [WithClassifier] says; by default every error), 5xx responses are failures, 4xx and other responses
// are successes, and a request whose context the caller cancelled is not
// counted. A counted 5xx response is still returned to the caller, as it is.
// While the circuit is open, RoundTrip returns at once an error matching
// [ErrOpen] whose RetryAfter() is the remaining open time (http.Client wraps
// it in a *url.Error, which unwraps to it), or the result of the fallback of
// [WithFallback].
//
// Transport is safe for concurrent use.
type Transport struct {
	next     http.RoundTripper
	group    *Group
	key      func(*http.Request) string
	fallback func(*http.Request, error) (*http.Response, error)
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport around next (nil means
// http.DefaultTransport), configured by opts: any option of a breaker
// (applied to each host's breaker), WithMaxBreakers (default 1024 hosts),
// WithKeyFunc and WithFallback. It returns an error naming the option at
// fault when an option is nil or makes no sense.
func NewTransport(next http.RoundTripper, opts ...Option) (*Transport, error) {
	cfg, err := newConfig(ctorTransport, opts)
	if err != nil {
		return nil, err
	}
	g, err := newGroup(ctorTransport, cfg)
	if err != nil {
		return nil, err
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &Transport{next: next, group: g, key: cfg.key, fallback: cfg.fallback}, nil
}

// Group returns the transport's breakers, to look at their state.
func (t *Transport) Group() *Group { return t.group }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var key string
	if t.key != nil {
		key = t.key(req)
	} else {
		key = req.URL.Host
	}
	b, err := t.group.Get(key)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, k, err := run(req.Context(), b, func(context.Context) (*http.Response, error) {
		return t.next.RoundTrip(req)
	}, statusOutcome)
	if k == rejected {
		closeBody(req)
	}
	if t.fallback != nil && wantsFallback(req.Context(), k, err) && (k == rejected || err != nil) {
		return t.fallback(req, err)
	}
	return resp, err
}

func statusOutcome(resp *http.Response) Outcome {
	if resp != nil && resp.StatusCode >= 500 {
		return Failure
	}
	return Success
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// CloseIdleConnections calls CloseIdleConnections on next when it has the
// method, so that http.Client.CloseIdleConnections reaches the base
// transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
