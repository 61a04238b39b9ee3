package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

// maxDrain is how much of a discarded response body a Transport reads before
// closing it: a body up to this size is read to the end so that its
// connection can be reused; a longer one is closed, which closes the
// connection.
const maxDrain = 64 << 10

// maxBudgets is the number of per-host budgets a Transport keeps before it
// forgets those that have been idle for a whole window.
const maxBudgets = 1024

// errNoResponse is the error of a next RoundTripper that returned neither a
// response nor an error.
var errNoResponse = errors.New("retry: the next RoundTripper returned neither a response nor an error")

// Transport is an http.RoundTripper that retries requests through next
// under a Policy. It is safe for concurrent use, and is meant to be made once
// and shared, like http.Transport.
//
// A request is eligible for retry when its method is GET, HEAD, OPTIONS,
// TRACE or one added by WithIdempotentMethods, or when it carries an
// idempotency key header (see WithKeyHeaders and WithAutoIdempotencyKey), and
// its URL scheme is http or https. Its body is sent again through GetBody, so
// a body must be nil, http.NoBody or come with GetBody (http.NewRequest sets
// it for *bytes.Buffer, *bytes.Reader and *strings.Reader bodies). A request
// that is not eligible is sent once, except that a dial error (nothing was
// sent) is retried for any method and any replayable body.
//
// For an eligible request, the Transport retries the statuses 408, 429, 502,
// 503 and 504, and 500 for the idempotent methods only (not for a POST that
// carries a key: the server may have done part of the work). It retries the
// errors of next (connection errors, timeouts, a server that closed the
// connection before answering, attempts that hit the policy's per-attempt
// timeout, errors that ask for a delay through the error protocol such as a
// circuit breaker's open error, whose wait is honoured like a Retry-After),
// except errors marked Permanent, certificate and TLS errors (x509 errors,
// *tls.CertificateVerificationError, tls.RecordHeaderError, tls.AlertError)
// and anything after the caller's context ended. It never retries other
// statuses (1xx, 2xx, 3xx, other 4xx, 501, 505 and up). A request net/http
// would refuse to send (a scheme other than http and https, no host, an
// invalid method, header name or header value) is handed to next once, so its
// error is never retried. Redirects are left to http.Client, which makes a
// RoundTrip per hop, so the redirect limit is never retried.
//
// Retry-After on a 429 or 503 sets the next wait (delta-seconds or an HTTP-date); one
// beyond the policy's WithMaxRetryAfter or the caller's deadline ends the
// call at once with a *RetryAfterError. Every response that is discarded is
// drained (up to 64 KiB, so its connection can be reused) and closed. The
// Transport never calls CloseIdleConnections on its own.
//
// When the policy stops with a request that was still failing, RoundTrip
// returns no response and a *GaveUpError (or *RetryAfterError) carrying the
// attempt count and the last status; http.Client wraps it in a *url.Error,
// which errors.Is and errors.As see through. A response with a status that is
// not retried is returned as it is.
//
// The retry budget (WithBudget) is kept per host (URL host and port), apart
// from the budget of the Policy's Do.
type Transport struct {
	next       http.RoundTripper
	p          *Policy
	keyHeaders []string
	methods    []string
	autoKey    bool

	mu      sync.RWMutex
	budgets map[string]*budget
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport that sends requests through next (nil
// means http.DefaultTransport) and retries them under p, with the options
// WithKeyHeaders, WithIdempotentMethods and WithAutoIdempotencyKey. It
// returns an error when p is nil, and an error naming the option at fault
// when an option is nil, does not apply to NewTransport (the Policy's options
// go to New) or makes no sense.
func NewTransport(next http.RoundTripper, p *Policy, opts ...Option) (*Transport, error) {
	if p == nil {
		return nil, errors.New("retry: NewTransport: policy is nil")
	}
	c := config{keyHeaders: []string{defaultKeyHeader}}
	if err := applyOptions(ctorTransport, &c, opts); err != nil {
		return nil, err
	}
	return &Transport{
		next:       next,
		p:          p,
		keyHeaders: c.keyHeaders,
		methods:    c.methods,
		autoKey:    c.autoKey,
		budgets:    make(map[string]*budget),
	}, nil
}

// CloseIdleConnections calls CloseIdleConnections on next when it has the
// method, so that http.Client.CloseIdleConnections reaches the base
// transport. The Transport never calls it on its own.
func (t *Transport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	if c, ok := t.base().(closeIdler); ok {
		c.CloseIdleConnections()
	}
}

func (t *Transport) base() http.RoundTripper {
	if t.next == nil {
		return http.DefaultTransport
	}
	return t.next
}

// RoundTrip sends req, and sends it again as the type's documentation says.
// It does not modify req; the attempts after the first use shallow copies of
// req with a body from GetBody.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.base()
	if !wellFormed(req) {
		// next fails it, or sends it its own way, once.
		return next.RoundTrip(req)
	}
	ctx := req.Context()
	keyed := t.hasKey(req.Header)
	if !keyed && t.autoKey && (req.Method == http.MethodPost || req.Method == http.MethodPatch) {
		r := new(http.Request)
		*r = *req
		r.Header = req.Header.Clone()
		if r.Header == nil {
			r.Header = make(http.Header, 1)
		}
		r.Header.Set(t.keyHeaders[0], uuid.NewString())
		req, keyed = r, true
	}
	idempotent := t.idempotent(req.Method)
	eligible := idempotent || keyed
	rewind := req.Body != nil && req.Body != http.NoBody
	replayable := !rewind || req.GetBody != nil

	var resp *http.Response
	n := 0
	err := t.p.loop(ctx, t.budgetFor(req.URL.Host), func(ctx context.Context) (int, verdict, error) {
		n++
		var body io.ReadCloser
		if n > 1 && rewind {
			var err error
			if body, err = req.GetBody(); err != nil {
				return 0, stop, fmt.Errorf("retry: rewinding the request body: %w", err)
			}
		}
		r, actx := req, ctx
		var cancel context.CancelFunc
		if d := t.p.cfg.attemptTimeout; d > 0 {
			actx, cancel = withAttemptTimeout(ctx, d)
			r = req.WithContext(actx)
		} else if body != nil {
			r = new(http.Request)
			*r = *req
		}
		if body != nil {
			r.Body = body
		}
		res, err := next.RoundTrip(r)
		if err == nil && res == nil {
			err = errNoResponse
		}
		if err != nil {
			err = attemptError(ctx, actx, err)
			if cancel != nil {
				cancel()
			}
			return 0, classifyTransportError(err, eligible, replayable), err
		}
		status := res.StatusCode
		if eligible && retryableStatus(status, idempotent) {
			var serr error = &StatusError{StatusCode: status}
			if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
				if v := res.Header.Get("Retry-After"); v != "" {
					if d, ok := httpx.ParseRetryAfter(v, time.Now()); ok {
						serr = After(serr, d)
					}
				}
			}
			drainClose(res.Body)
			if cancel != nil {
				cancel()
			}
			if !replayable {
				return status, cannotReplay, serr
			}
			return status, again, serr
		}
		if cancel != nil {
			if rw, ok := res.Body.(io.ReadWriteCloser); ok && status == http.StatusSwitchingProtocols {
				res.Body = &cancelRWBody{cancelBody{rc: rw, cancel: cancel}, rw}
			} else {
				res.Body = &cancelBody{rc: res.Body, cancel: cancel}
			}
		}
		resp = res
		return status, done, nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (t *Transport) hasKey(h http.Header) bool {
	for _, k := range t.keyHeaders {
		for _, v := range h[k] {
			if v != "" {
				return true
			}
		}
	}
	return false
}

func (t *Transport) idempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	for _, m := range t.methods {
		if m == method {
			return true
		}
	}
	return false
}

// budgetFor returns the budget of host, or nil without budgets.
func (t *Transport) budgetFor(host string) *budget {
	if !t.p.cfg.budget {
		return nil
	}
	t.mu.RLock()
	b := t.budgets[host]
	t.mu.RUnlock()
	if b != nil {
		return b
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b = t.budgets[host]; b != nil {
		return b
	}
	now := time.Now()
	if len(t.budgets) >= maxBudgets {
		for h, old := range t.budgets {
			if old.idle(now) {
				delete(t.budgets, h)
			}
		}
	}
	b = t.p.newBudget()
	t.budgets[host] = b
	return b
}

// retryableStatus reports whether a response with status may be retried for
// an eligible request.
func retryableStatus(status int, idempotent bool) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case http.StatusInternalServerError:
		return idempotent
	}
	return false
}

// classifyTransportError decides whether a RoundTrip error may be retried.
func classifyTransportError(err error, eligible, replayable bool) verdict {
	if IsPermanent(err) || certificateError(err) {
		return stop
	}
	var retryable bool
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		// Nothing was sent: safe for any method.
		retryable = true
		eligible = true
	case eligible:
		// The request was well formed (see wellFormed), so what failed is
		// the connection, the server or a layer below that can recover:
		// net/http reports some of these with untyped errors (a server
		// that closed the connection before answering), so everything is
		// retried but what cannot change.
		retryable = true
	}
	switch {
	case !retryable:
		return stop
	case replayable:
		return again
	case eligible:
		return cannotReplay
	}
	return stop
}

// certificateError reports whether err is a certificate or TLS error:
// retrying it would fail the same way.
func certificateError(err error) bool {
	var (
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ale tls.AlertError
		uae x509.UnknownAuthorityError
		hne x509.HostnameError
		cie x509.CertificateInvalidError
	)
	return errors.As(err, &cve) || errors.As(err, &rhe) || errors.As(err, &ale) ||
		errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie)
}

// wellFormed reports whether req is an http or https request that net/http
// would try to send: a host, a valid method, valid header names and values.
// The Transport retries only such requests, so that an error of a request
// that could never be sent is not retried.
func wellFormed(req *http.Request) bool {
	u := req.URL
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || (u.Host == "" && req.Host == "") {
		return false
	}
	if req.Method != "" && !validToken(req.Method) {
		return false
	}
	for k, vv := range req.Header {
		if !validToken(k) {
			return false
		}
		for _, v := range vv {
			if !validHeaderValue(v) {
				return false
			}
		}
	}
	return true
}

// validHeaderValue reports whether v has no control character but tab, as
// RFC 9110's field-value requires.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// drainClose reads up to maxDrain bytes of body and closes it.
func drainClose(body io.ReadCloser) {
	if body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, body, maxDrain)
	_ = body.Close()
}

// cancelBody releases an attempt's context when the response body is closed.
type cancelBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Read(p []byte) (int, error) { return b.rc.Read(p) }

func (b *cancelBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// cancelRWBody is a cancelBody for the io.ReadWriteCloser body of a 101
// Switching Protocols response.
type cancelRWBody struct {
	cancelBody
	w io.Writer
}

func (b *cancelRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }
