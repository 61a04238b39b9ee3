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
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
	"github.com/steadfast-go/steadfast/webhook"
)

// Defaults of the options.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 4 << 10
	DefaultGonePause        = time.Hour
	DefaultUserAgent        = "steadfast-webhook/1"
)

// Endpoint is where the messages of one topic go.
type Endpoint struct {
	// URL is the absolute http or https URL the messages are POSTed to.
	// Required.
	URL string
	// Secrets sign every delivery: "whsec_…" for v1 (HMAC-SHA256), "whsk_…"
	// for v1a (ed25519). Give two while rotating. At least one is required.
	Secrets []string
	// Headers are added to every request to the endpoint, after the
	// message's own headers. Optional.
	Headers map[string]string
}

// ErrUnknownEndpoint is matched by the (permanent) error of Publish for a
// message whose topic names no endpoint.
var ErrUnknownEndpoint = errors.New("webhookpub: unknown endpoint")

// ErrAttemptTimeout is the cause of the context of an attempt cut off by the
// per-attempt timeout (WithTimeout).
var ErrAttemptTimeout = errors.New("webhookpub: attempt timed out")

// StatusError is the error of Publish when the endpoint answered with a
// status other than 2xx.
type StatusError struct {
	// Endpoint is the topic that names the endpoint.
	Endpoint string
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Body is the start of the response body, at most WithMaxResponseBytes.
	Body []byte
	// RetryAfter is the delay the endpoint asked for with a Retry-After
	// header (delta-seconds or HTTP-date), valid when HasRetryAfter.
	RetryAfter time.Duration
	// HasRetryAfter reports whether the answer carried a valid Retry-After.
	HasRetryAfter bool
}

// Error names the endpoint and the status, with the start of the body.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("webhookpub: endpoint %q answered %d %s", e.Endpoint, e.StatusCode, http.StatusText(e.StatusCode))
	if len(e.Body) > 0 {
		b := e.Body
		if len(b) > 200 {
			b = b[:200]
		}
		s += ": " + strconv.Quote(string(b))
	}
	return s
}

// Option configures a Publisher.
type Option func(*config) error

type config struct {
	client      *http.Client
	timeout     time.Duration
	maxResp     int64
	gonePause   time.Duration
	userAgent   string
	now         func() time.Time
	logger      *slog.Logger
	meter       metric.MeterProvider
	breakerOpts []breaker.Option
}

// WithClient sets the HTTP client. The publisher uses a copy whose
// CheckRedirect refuses every redirect; the client's own Timeout, if any,
// still applies. Give it no retrying transport: the relay's persisted
// attempts are the retries. Defaults to a client over http.DefaultTransport.
func WithClient(c *http.Client) Option {
	return func(cfg *config) error {
		if c == nil {
			return errors.New("webhookpub: WithClient(nil): a client is required")
		}
		cfg.client = c
		return nil
	}
}

// WithTimeout sets the timeout of one attempt (connection, request and
// response headers, and the capped read of the body). It must be positive
// and should be shorter than the relay's publish timeout. Defaults to
// DefaultTimeout (10 s).
func WithTimeout(d time.Duration) Option {
	return func(cfg *config) error {
		if d <= 0 {
			return fmt.Errorf("webhookpub: WithTimeout(%v): must be positive", d)
		}
		cfg.timeout = d
		return nil
	}
}

// WithMaxResponseBytes caps how much of a response body is read (and kept in
// a StatusError); the rest is discarded with the connection. It must be
// positive. Defaults to DefaultMaxResponseBytes (4 KiB).
func WithMaxResponseBytes(n int64) Option {
	return func(cfg *config) error {
		if n <= 0 {
			return fmt.Errorf("webhookpub: WithMaxResponseBytes(%d): must be positive", n)
		}
		cfg.maxResp = n
		return nil
	}
}

// WithGonePause sets how long an endpoint that answered 410 Gone is paused
// before the relay tries it again. It must be positive. Defaults to
// DefaultGonePause (1 h).
func WithGonePause(d time.Duration) Option {
	return func(cfg *config) error {
		if d <= 0 {
			return fmt.Errorf("webhookpub: WithGonePause(%v): must be positive", d)
		}
		cfg.gonePause = d
		return nil
	}
}

// WithUserAgent sets the User-Agent of the requests. Defaults to
// DefaultUserAgent.
func WithUserAgent(ua string) Option {
	return func(cfg *config) error {
		cfg.userAgent = ua
		return nil
	}
}

// WithClock sets the clock of the webhook-timestamp header and of
// Retry-After dates. Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return func(cfg *config) error {
		if now == nil {
			return errors.New("webhookpub: WithClock(nil): a clock is required")
		}
		cfg.now = now
		return nil
	}
}

// WithLogger sets the logger. A 410 pause is logged at warn level; single
// deliveries are not logged. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) error {
		if l == nil {
			return errors.New("webhookpub: WithLogger(nil): a logger is required")
		}
		cfg.logger = l
		return nil
	}
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counter
// steadfast.webhookpub.attempts (attributes endpoint and result: delivered,
// retry, permanent, paused, breaker_open). Defaults to
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(cfg *config) error {
		if mp == nil {
			return errors.New("webhookpub: WithMeterProvider(nil): a meter provider is required")
		}
		cfg.meter = mp
		return nil
	}
}

// WithBreaker sets options of the per-endpoint circuit breakers (see package
// breaker; its defaults apply otherwise). The publisher's classifier counts
// transport errors, timeouts, 5xx and 408 as failures, 429 as neither, and
// every other answer as a success; a WithClassifier given here replaces it.
func WithBreaker(opts ...breaker.Option) Option {
	return func(cfg *config) error {
		cfg.breakerOpts = append(cfg.breakerOpts, opts...)
		return nil
	}
}

// Publisher delivers outbox messages as signed webhooks. It implements
// outbox.Publisher and is safe for concurrent use.
type Publisher struct {
	cfg       config
	endpoints map[string]*endpoint
	breakers  *breaker.Group
	attempts  metric.Int64Counter
}

type endpoint struct {
	name    string
	url     string
	signer  *webhook.Signer
	headers map[string]string
}

var _ outbox.Publisher = (*Publisher)(nil)

// New returns a Publisher for the endpoints, keyed by the topic whose
// messages go there. It refuses, with an error naming the endpoint, an empty
// map, an endpoint without an absolute http(s) URL, and missing or malformed
// secrets; and, naming the option, an invalid option.
func New(endpoints map[string]Endpoint, opts ...Option) (*Publisher, error) {
	cfg := config{
		timeout:   DefaultTimeout,
		maxResp:   DefaultMaxResponseBytes,
		gonePause: DefaultGonePause,
		userAgent: DefaultUserAgent,
		now:       time.Now,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if len(endpoints) == 0 {
		return nil, errors.New("webhookpub: no endpoint given")
	}
	p := &Publisher{endpoints: make(map[string]*endpoint, len(endpoints))}
	for name, ep := range endpoints {
		if name == "" {
			return nil, errors.New("webhookpub: an endpoint has an empty topic")
		}
		u, err := url.Parse(ep.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("webhookpub: endpoint %q: URL %q is not an absolute http or https URL", name, ep.URL)
		}
		signer, err := webhook.NewSigner(ep.Secrets...)
		if err != nil {
			return nil, fmt.Errorf("webhookpub: endpoint %q: %w", name, err)
		}
		p.endpoints[name] = &endpoint{name: name, url: u.String(), signer: signer, headers: ep.Headers}
	}
	if cfg.client == nil {
		cfg.client = &http.Client{}
	}
	c := *cfg.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.client = &c
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
	gopts := make([]breaker.GroupOption, len(bopts))
	for i, o := range bopts {
		gopts[i] = o
	}
	g, err := breaker.NewGroup(gopts...)
	if err != nil {
		return nil, fmt.Errorf("webhookpub: WithBreaker: %w", err)
	}
	p.breakers = g
	p.attempts, err = cfg.meter.Meter("github.com/steadfast-go/steadfast/outbox/webhookpub").Int64Counter(
		"steadfast.webhookpub.attempts",
		metric.WithDescription("Webhook delivery attempts, by endpoint and result."),
		metric.WithUnit("{attempt}"))
	if err != nil {
		return nil, fmt.Errorf("webhookpub: creating metrics: %w", err)
	}
	p.cfg = cfg
	return p, nil
}

// classify counts transport errors, timeouts, 5xx and 408 as failures of the
// endpoint, 429 as neither (the endpoint is up, it asks for less), and any
// other answer as a success.
func classify(_ context.Context, err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	var se *StatusError
	if errors.As(err, &se) {
		switch {
		case se.StatusCode >= 500, se.StatusCode == http.StatusRequestTimeout:
			return breaker.Failure
		case se.StatusCode == http.StatusTooManyRequests:
			return breaker.Ignore
		}
		return breaker.Success
	}
	return breaker.Failure
}

// Publish POSTs d to the endpoint of d.Topic, signed, and returns nil once
// the endpoint answered 2xx. The request carries d.Headers, then the
// endpoint's Headers, a Content-Type of application/json unless one of those
// set it, and the three webhook headers. Its errors follow the outbox
// protocol, as described in the package documentation; a message id that
// cannot be a header value is a permanent error.
func (p *Publisher) Publish(ctx context.Context, d outbox.Delivery) error {
	ep, ok := p.endpoints[d.Topic]
	if !ok {
		return retry.Permanent(fmt.Errorf("%w: topic %q", ErrUnknownEndpoint, d.Topic))
	}
	if err := webhook.ValidateID(d.ID); err != nil {
		return retry.Permanent(fmt.Errorf("webhookpub: endpoint %q: %w", ep.name, err))
	}
	b, err := p.breakers.Get(ep.name)
	if err != nil {
		return fmt.Errorf("webhookpub: endpoint %q: %w", ep.name, err)
	}
	_, err = breaker.Execute(ctx, b, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, p.attempt(ctx, ep, d)
	})
	return p.outcome(ctx, ep, err)
}

func (p *Publisher) outcome(ctx context.Context, ep *endpoint, err error) error {
	result := "retry"
	defer func() {
		p.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", ep.name), attribute.String("result", result)))
	}()
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
	var se *StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch code := se.StatusCode; {
	case code == http.StatusGone:
		result = "paused"
		p.cfg.logger.WarnContext(ctx, "webhook endpoint answered 410 Gone; pausing its deliveries",
			slog.String("endpoint", ep.name), slog.Duration("pause", p.cfg.gonePause))
		return outbox.Pause(err, p.cfg.gonePause)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if se.HasRetryAfter {
			return retry.After(err, se.RetryAfter)
		}
		return err
	case code == http.StatusConflict && se.HasRetryAfter:
		// A receiver behind idempotency.Middleware answers a duplicate that
		// arrives while the first delivery is still being handled this way.
		return retry.After(err, se.RetryAfter)
	case code == http.StatusRequestTimeout || code == http.StatusTooEarly || code >= 500 || code < 400:
		return err
	}
	result = "permanent"
	return retry.Permanent(err)
}

func (p *Publisher) attempt(ctx context.Context, ep *endpoint, d outbox.Delivery) error {
	ctx, cancel := context.WithTimeoutCause(ctx, p.cfg.timeout, ErrAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(d.Payload))
	if err != nil {
		return retry.Permanent(fmt.Errorf("webhookpub: endpoint %q: %w", ep.name, err))
	}
	h := req.Header
	for k, v := range d.Headers {
		h.Set(k, v)
	}
	for k, v := range ep.headers {
		h.Set(k, v)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	if p.cfg.userAgent != "" {
		h.Set("User-Agent", p.cfg.userAgent)
	}
	ep.signer.SetHeaders(h, d.ID, p.cfg.now(), d.Payload)

	resp, err := p.cfg.client.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return fmt.Errorf("webhookpub: endpoint %q: %w", ep.name, cause)
		}
		return fmt.Errorf("webhookpub: endpoint %q: %w", ep.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain a little so the connection can be reused; never much.
		_, _ = io.CopyN(io.Discard, resp.Body, p.cfg.maxResp)
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, p.cfg.maxResp))
	se := &StatusError{Endpoint: ep.name, StatusCode: resp.StatusCode, Body: body}
	if v := resp.Header.Get("Retry-After"); v != "" {
		se.RetryAfter, se.HasRetryAfter = parseRetryAfter(v, p.cfg.now())
	}
	return se
}

// parseRetryAfter reads delta-seconds or an HTTP-date (RFC 9110, 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > int64(365*24*time.Hour/time.Second) {
			n = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
