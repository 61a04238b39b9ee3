package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/steadfast-go/steadfast/retry"
)

// Transport is an http.RoundTripper that waits for its key's budget in a
// Limiter before each request, and learns from each response what the
// provider announced (see Limiter.Observe), so that a provider that
// announces its budget never has to answer 429.
//
// The key of a request is its host (req.URL.Host, with its port) unless
// WithKey says otherwise. The wait is bounded by the request's context: when
// it would outlast the deadline, RoundTrip returns at once, without sending,
// a *LimitedError whose RetryAfter is the wait (http.Client wraps it in a
// *url.Error, which unwraps to it); when the context ends during the wait it
// returns the context's error.
//
// Place it outside retry.Transport and breaker.Transport (see the package
// documentation): the wait then happens once per call, before retry starts
// an attempt and its timeout, so a quota wait is never an attempt timeout, a
// breaker failure or a spent retry. When the retry.Transport below gives up
// on a 429 (its Retry-After is longer than retry allows, or the attempts are
// spent), the key is stopped for that Retry-After too.
//
// Transport is safe for concurrent use.
type Transport struct {
	next http.RoundTripper
	lim  *Limiter
	key  func(*http.Request) string
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport that sends requests through next (nil
// means http.DefaultTransport) under l's quota, configured by opts: WithKey.
// It returns an error for a nil l, and one naming the option at fault,
// including the options of New, which apply to the Limiter.
func NewTransport(next http.RoundTripper, l *Limiter, opts ...Option) (*Transport, error) {
	var cfg config
	if err := applyOptions(ctorTransport, &cfg, opts); err != nil {
		return nil, err
	}
	if l == nil {
		return nil, errors.New("ratelimit: NewTransport: the *Limiter is nil")
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &Transport{next: next, lim: l, key: cfg.key}, nil
}

// RoundTrip waits for the budget of req's key, sends req through next, and
// learns from the response.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.URL.Host
	if t.key != nil {
		key = t.key(req)
	}
	ctx := req.Context()
	if err := t.lim.Wait(ctx, key); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	sent := time.Now()
	resp, err := t.next.RoundTrip(req)
	switch {
	case resp != nil && announces(resp):
		t.lim.Observe(ctx, key, resp, sent)
	case err != nil:
		t.learnGaveUp(ctx, key, err)
	}
	return resp, err
}

// learnGaveUp stops key when a retry.Transport below gave up on a 429: for
// the delay it asked for (its Retry-After), or else for a second.
func (t *Transport) learnGaveUp(ctx context.Context, key string, err error) {
	var g *retry.GaveUpError
	if !errors.As(err, &g) || g.LastStatus != http.StatusTooManyRequests {
		return
	}
	d, ok := retry.RetryAfter(err)
	if !ok || d <= 0 {
		d = pause429
	}
	t.lim.pause(ctx, key, time.Now(), min(d, t.lim.cfg.maxPause))
}

// CloseIdleConnections calls CloseIdleConnections on next when it has the
// method, so that http.Client.CloseIdleConnections reaches the base
// transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
