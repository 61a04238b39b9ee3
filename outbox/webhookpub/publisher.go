package webhookpub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/internal/httpx"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
	"github.com/steadfast-go/steadfast/webhook"
)

// Endpoint is where the messages of one destination go.
type Endpoint struct {
	// URL is the absolute http or https URL the messages are POSTed to.
	// Required.
	URL string
	// Secrets sign every delivery: "whsec_…" for v1 (HMAC-SHA256), "whsk_…"
	// for v1a (ed25519). At least one is required. While rotating, give the
	// old and the new one: every delivery then carries a signature by each,
	// so the receiver verifies it with either.
	Secrets []string
	// Headers are added to every request to the endpoint, after the
	// message's own headers (a User-Agent here replaces the publisher's
	// "steadfast-webhook/1"). Names must be RFC 9110 tokens and values
	// field values (no control byte but tab, no space or tab at either
	// end); New refuses others. Optional.
	Headers map[string]string
}

// ErrUnknownEndpoint is matched by the (permanent) error of Publish for a
// message whose destination names no endpoint. A resolver (WithResolver)
// returns it, wrapped or not, for a destination that has none.
var ErrUnknownEndpoint = errors.New("webhookpub: unknown endpoint")

// ErrClosed is matched by the error of Publish after Close. The error is
// transient: a relay still running keeps the message for a later attempt.
var ErrClosed = errors.New("webhookpub: publisher closed")

// Publisher delivers outbox messages as signed webhooks. It implements
// outbox.Publisher and is safe for concurrent use.
type Publisher struct {
	cfg       config
	client    *http.Client
	guard     *guard // nil with WithUnguardedClient
	endpoints map[string]*endpoint
	resolved  *cache // nil without WithResolver
	breakers  *breaker.Group
	attempts  metric.Int64Counter
	now       func() time.Time // the clock of signatures, Retry-After dates and the cache
	closed    atomic.Bool
}

type endpoint struct {
	destination string
	metricName  string // the destination, or "resolved"
	url         string
	signer      *webhook.Signer
	headers     map[string]string
}

var _ outbox.Publisher = (*Publisher)(nil)

// New returns a Publisher for the endpoints, keyed by the destination whose
// messages go there, and for those WithResolver finds. It refuses, with an
// error naming the destination, an endpoint without an absolute http(s) URL,
// a URL whose host is an address the publisher may not reach
// (ErrForbiddenAddress), missing or malformed secrets (secrets must decode to
// at least 24 bytes) and malformed headers; no endpoint and no resolver; and,
// naming the option, an invalid or nil option.
func New(endpoints map[string]Endpoint, opts ...Option) (*Publisher, error) {
	cfg := config{
		timeout:   defaultAttemptTimeout,
		gonePause: defaultGonePause,
		cacheSize: defaultCacheSize,
		cacheTTL:  defaultCacheTTL,
	}
	if err := applyOptions("New", &cfg, opts); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(endpoints) == 0 && cfg.resolve == nil {
		return nil, errors.New("webhookpub: New: no endpoint given, and no resolver (WithResolver)")
	}
	p := &Publisher{endpoints: make(map[string]*endpoint, len(endpoints)), now: time.Now}
	if cfg.client != nil {
		c := *cfg.client
		p.client = &c
	} else {
		p.guard = &guard{allowed: cfg.allowed}
		p.client = &http.Client{Transport: p.guard.transport()}
	}
	p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for name, ep := range endpoints {
		if name == "" {
			return nil, errors.New("webhookpub: New: an endpoint has an empty destination")
		}
		e, err := p.build(name, ep)
		if err != nil {
			return nil, fmt.Errorf("webhookpub: New: endpoint %q: %w", name, err)
		}
		e.metricName = name
		p.endpoints[name] = e
	}
	if cfg.resolve != nil {
		p.resolved = newCache(cfg.resolve, cfg.cacheSize, cfg.cacheTTL)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.meter == nil {
		cfg.meter = otel.GetMeterProvider()
	}
	bopts := append([]breaker.Option{
		breaker.WithClassifier(classify),
		breaker.WithLogger(cfg.logger),
		breaker.WithMeterProvider(cfg.meter),
	}, cfg.breakerOpts...)
	g, err := breaker.NewGroup(bopts...)
	if err != nil {
		return nil, fmt.Errorf("webhookpub: New: WithBreaker: %w", err)
	}
	p.breakers = g
	p.attempts, err = cfg.meter.Meter("github.com/steadfast-go/steadfast/outbox/webhookpub").Int64Counter(
		"steadfast.webhookpub.attempts",
		metric.WithDescription("Webhook delivery attempts, by endpoint and result."),
		metric.WithUnit("{attempt}"))
	if err != nil {
		return nil, fmt.Errorf("webhookpub: New: creating metrics: %w", err)
	}
	p.cfg = cfg
	return p, nil
}

// build checks ep and makes it ready to send to.
func (p *Publisher) build(destination string, ep Endpoint) (*endpoint, error) {
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("URL %q is not an absolute http or https URL", ep.URL)
	}
	if p.guard != nil {
		if err := p.guard.checkURLHost(u.Hostname()); err != nil {
			return nil, err
		}
	}
	signer, err := webhook.NewSigner(ep.Secrets...)
	if err != nil {
		return nil, err
	}
	for k, v := range ep.Headers {
		if err := httpx.CheckField(k, v); err != nil {
			return nil, err
		}
	}
	return &endpoint{destination: destination, metricName: "resolved", url: u.String(), signer: signer, headers: ep.Headers}, nil
}

// endpoint returns the endpoint of destination: from the static map, else
// from the resolver.
func (p *Publisher) endpoint(ctx context.Context, destination string) (*endpoint, error) {
	if ep, ok := p.endpoints[destination]; ok {
		return ep, nil
	}
	if p.resolved == nil {
		return nil, permanent(fmt.Errorf("%w: destination %q", ErrUnknownEndpoint, destination))
	}
	return p.resolved.get(ctx, destination, p.now, p.build)
}

// destinationOf names where d goes: its Destination, which the relay sets
// on every delivery (the topic when the message named none).
func destinationOf(d outbox.Delivery) string {
	if d.Destination != "" {
		return d.Destination
	}
	return d.Topic
}

// classify counts transport errors, timeouts, 5xx and 408 as failures of the
// endpoint, 429 as neither (the endpoint is up, it asks for less), a
// forbidden address as neither (nothing was sent), and any other answer as
// a success.
func classify(_ context.Context, err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	var se *retry.StatusError
	if errors.As(err, &se) {
		switch {
		case se.StatusCode >= 500, se.StatusCode == http.StatusRequestTimeout:
			return breaker.Failure
		case se.StatusCode == http.StatusTooManyRequests:
			return breaker.Ignore
		}
		return breaker.Success
	}
	if errors.Is(err, ErrForbiddenAddress) {
		return breaker.Ignore
	}
	return breaker.Failure
}

// Publish POSTs d to the endpoint of its destination, signed, and returns nil
// once the endpoint answered 2xx. The request carries a User-Agent of
// "steadfast-webhook/1", d.Headers, then the endpoint's Headers, a
// Content-Type of application/json unless one of those set it, and the three
// webhook headers. Its errors follow the outbox protocol, as described in the
// package documentation. A message that cannot be sent as it is (a header
// name that is not a token, a value with CR, LF or NUL, an id that cannot be
// a webhook-id) is a permanent error, found before the request is sent and
// never counted against the destination's breaker.
func (p *Publisher) Publish(ctx context.Context, d outbox.Delivery) error {
	if p.closed.Load() {
		return ErrClosed
	}
	dest := destinationOf(d)
	ep, err := p.endpoint(ctx, dest)
	if err != nil {
		return err
	}
	h, err := p.header(ep, d)
	if err != nil {
		p.count(ctx, ep, "permanent")
		return permanent(fmt.Errorf("webhookpub: destination %q: message %.64q cannot be sent: %w", dest, d.ID, err))
	}
	b, err := p.breakers.Get(dest)
	if err != nil {
		p.count(ctx, ep, "retry")
		return fmt.Errorf("webhookpub: destination %q: %w", dest, err)
	}
	var wait time.Duration
	var asked bool
	_, err = breaker.Execute(ctx, b, func(ctx context.Context) (struct{}, error) {
		var err error
		wait, asked, err = p.attempt(ctx, ep, h, d.Payload)
		return struct{}{}, err
	})
	return p.outcome(ctx, ep, err, wait, asked)
}

// Throttle takes, from the limiter of destination (WithRateLimit), the
// budget of one delivery to it, and returns nil; or, when the destination has
// no budget now, takes nothing and returns an error matching
// ratelimit.ErrLimited whose RetryAfter says when it will have some. For a
// destination without a limiter it returns nil. The relay calls it before each
// delivery when it is given outbox.WithThrottle(p.Throttle), and keeps a
// message it refuses in memory until then, without spending an attempt.
// Errors other than ErrLimited are the limiter's (ctx ended,
// ratelimit.ErrTooManyKeys).
func (p *Publisher) Throttle(ctx context.Context, destination string) error {
	lim := p.cfg.limiter(destination)
	if lim == nil {
		return nil
	}
	return lim.Allow(ctx, destination)
}

// header builds and signs the request's header, or says why it cannot be.
func (p *Publisher) header(ep *endpoint, d outbox.Delivery) (http.Header, error) {
	h := make(http.Header, len(d.Headers)+len(ep.headers)+5)
	h.Set("User-Agent", defaultUserAgent)
	for k, v := range d.Headers {
		if err := httpx.CheckField(k, v); err != nil {
			return nil, err
		}
		h.Set(k, v)
	}
	for k, v := range ep.headers {
		h.Set(k, v)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	// Signed last, and no other header may pose as a webhook header.
	for _, k := range webhookHeaders {
		h.Del(k)
	}
	if err := ep.signer.SetHeaders(h, d.ID, p.now(), d.Payload); err != nil {
		return nil, err
	}
	return h, nil
}

func (p *Publisher) count(ctx context.Context, ep *endpoint, result string) {
	p.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("webhookpub.endpoint", ep.metricName), attribute.String("webhookpub.outcome", result)))
}

func (p *Publisher) outcome(ctx context.Context, ep *endpoint, err error, wait time.Duration, asked bool) error {
	result := "retry"
	defer func() { p.count(ctx, ep, result) }()
	if err == nil {
		result = "delivered"
		return nil
	}
	if errors.Is(err, breaker.ErrOpen) {
		result = "breaker_open"
		d, _ := retry.RetryAfter(err)
		if d <= 0 {
			// Half-open and its probes are out: their answers come within
			// one attempt's timeout, so pause that long, not the relay's
			// default pause.
			d = p.cfg.timeout
		}
		return outbox.Pause(err, d)
	}
	if errors.Is(err, ErrForbiddenAddress) {
		result = "permanent"
		return permanent(err)
	}
	var se *retry.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch code := se.StatusCode; {
	case code == http.StatusGone:
		result = "paused"
		p.cfg.logger.WarnContext(ctx, "webhook endpoint answered 410 Gone; pausing its deliveries",
			slog.String("destination", ep.destination), slog.Duration("pause", p.cfg.gonePause))
		return outbox.Pause(err, p.cfg.gonePause)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if asked {
			return retry.After(err, wait)
		}
		return err
	case code == http.StatusConflict && asked:
		// A receiver behind idempotency.Middleware answers a duplicate that
		// arrives while the first delivery is still being handled this way.
		return retry.After(err, wait)
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code >= 500 || code < 400:
		return err
	}
	result = "permanent"
	return permanent(err)
}

// attempt sends one request. For an answer that is not 2xx it returns an
// error wrapping a *retry.StatusError, and the delay a valid Retry-After
// asked for.
func (p *Publisher) attempt(ctx context.Context, ep *endpoint, h http.Header, payload []byte) (wait time.Duration, asked bool, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, p.cfg.timeout, retry.ErrAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(payload))
	if err != nil {
		return 0, false, permanent(fmt.Errorf("webhookpub: destination %q: %w", ep.destination, err))
	}
	req.Header = h
	lim := p.cfg.limiter(ep.destination)
	sent := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return 0, false, fmt.Errorf("webhookpub: destination %q: %w", ep.destination, cause)
		}
		// The URL may hold a tenant's token: name the destination instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, false, fmt.Errorf("webhookpub: destination %q: POST: %w", ep.destination, err)
	}
	defer resp.Body.Close()
	if lim != nil {
		// Every answer may announce the quota, a 2xx as much as a 429.
		lim.Observe(ctx, ep.destination, resp, sent)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain a little so the connection can be reused; never much.
		_, _ = io.CopyN(io.Discard, resp.Body, maxResponseBytes)
		return 0, false, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if v := resp.Header.Get("Retry-After"); v != "" {
		wait, asked = httpx.ParseRetryAfter(v, p.now())
	}
	return wait, asked, fmt.Errorf("webhookpub: destination %q answered %w%s", ep.destination,
		&retry.StatusError{StatusCode: resp.StatusCode}, quoteBody(body))
}

// quoteBody returns ": " and the start of a failed answer's body, at most
// maxErrorBody bytes of it, quoted so that it is printable whatever it holds;
// "" for an empty body. Headers never go into an error.
func quoteBody(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
		// Cut on a character boundary.
		for i := 0; i < utf8.UTFMax && len(body) > 0 && !utf8.Valid(body); i++ {
			body = body[:len(body)-1]
		}
	}
	return ": " + strconv.Quote(string(body))
}

func permanent(err error) error { return retry.Permanent(err) }

// webhookHeaders are the headers the signer sets.
var webhookHeaders = [...]string{"Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"}

// Close makes later publishes fail with ErrClosed and closes the idle
// connections of the publisher's own transport (a client given with
// WithUnguardedClient is the caller's to close). Publishes
// in flight finish. Stop the relay first. It is safe to call more than
// once and always returns nil.
func (p *Publisher) Close() error {
	if p == nil || p.closed.Swap(true) {
		return nil
	}
	if p.guard != nil {
		p.client.CloseIdleConnections()
	}
	return nil
}
