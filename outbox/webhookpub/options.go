package webhookpub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/ratelimit"
)

// Option configures a Publisher. Options are made by the With functions of
// this package; New refuses, with an error naming it, an invalid option.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("webhookpub", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

const (
	defaultAttemptTimeout = 10 * time.Second
	defaultGonePause      = time.Hour
	defaultUserAgent      = "steadfast-webhook/1"
	defaultCacheSize      = 1000
	defaultCacheTTL       = time.Minute
	// maxResponseBytes is how much of a response body is read: the start
	// of a failed answer's body goes into the error, the rest of any body
	// is drained so the connection can be reused, up to this bound.
	maxResponseBytes = 4 << 10
	// maxErrorBody is how much of a failed answer's body the error keeps.
	maxErrorBody = 200
)

type config struct {
	client      *http.Client // WithUnguardedClient; nil: the guarded transport
	allowed     []netip.Prefix
	allowedSet  bool
	timeout     time.Duration
	gonePause   time.Duration
	logger      *slog.Logger
	meter       metric.MeterProvider
	breakerOpts []breaker.Option
	resolve     func(ctx context.Context, destination string) (Endpoint, error)
	cacheSize   int
	cacheTTL    time.Duration
	cacheSet    bool
	rateAll     *ratelimit.Limiter            // WithRateLimit without destinations
	rateBy      map[string]*ratelimit.Limiter // WithRateLimit with destinations
}

// limiter returns the limiter of destination, or nil.
func (c *config) limiter(destination string) *ratelimit.Limiter {
	if l, ok := c.rateBy[destination]; ok {
		return l
	}
	return c.rateAll
}

// WithAllowedNetworks lets the publisher connect to addresses in the given
// networks even though they are not globally reachable: CIDR prefixes
// ("10.20.0.0/16", "fd00:1::/64") or single addresses ("127.0.0.1", "::1").
// Use it for webhooks to internal services, and in tests and examples that
// serve on loopback (WithAllowedNetworks("127.0.0.0/8", "::1")). Every other
// address that is not globally reachable stays refused (ErrForbiddenAddress).
// It cannot be combined with WithUnguardedClient. By default no such network
// is allowed.
func WithAllowedNetworks(networks ...string) Option {
	return newOption("WithAllowedNetworks", func(c *config) error {
		if len(networks) == 0 {
			return errors.New("no network given")
		}
		for _, s := range networks {
			p, err := parseNetwork(s)
			if err != nil {
				return err
			}
			c.allowed = append(c.allowed, p)
		}
		c.allowedSet = true
		return nil
	})
}

// WithUnguardedClient makes the publisher send through the caller's HTTP
// client, and so leaves the address check to the caller: the publisher no
// longer refuses internal addresses (ErrForbiddenAddress), since it cannot see
// what the client dials (through a proxy, say). Use it when the client's
// transport guards addresses itself, or when every endpoint URL is the
// operator's own. The publisher uses a copy of c whose CheckRedirect refuses
// every redirect; c's own Timeout, if any, still applies. Give it no retrying
// transport: the relay's persisted attempts are the retries. It cannot be
// combined with WithAllowedNetworks. By default the publisher uses its own
// guarded transport (http.DefaultTransport's settings, no proxy, every dialled
// address checked).
func WithUnguardedClient(c *http.Client) Option {
	return newOption("WithUnguardedClient", func(cfg *config) error {
		if c == nil {
			return errors.New("a client is required")
		}
		cfg.client = c
		return nil
	})
}

// WithAttemptTimeout sets the timeout of one attempt (connection, request
// and response headers, and the capped read of the body); an attempt cut
// off by it fails with an error matching retry.ErrAttemptTimeout, and is
// retried. It must be positive and should be shorter than the relay's publish
// timeout. Defaults to 10 s.
func WithAttemptTimeout(d time.Duration) Option {
	return newOption("WithAttemptTimeout", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%v must be positive", d)
		}
		c.timeout = d
		return nil
	})
}

// WithGonePause sets how long a destination that answered 410 Gone is paused
// before the relay tries it again. It must be positive. Defaults to 1 h.
func WithGonePause(d time.Duration) Option {
	return newOption("WithGonePause", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%v must be positive", d)
		}
		c.gonePause = d
		return nil
	})
}

// WithLogger sets the logger. A 410 pause is logged at warn level; single
// deliveries are not logged. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("a logger is required")
		}
		c.logger = l
		return nil
	})
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counter
// steadfast.webhookpub.attempts (attributes webhookpub.endpoint: the destination of a
// static endpoint, "resolved" for one found by WithResolver, so that the
// number of series stays bounded; and webhookpub.outcome: delivered, retry, permanent,
// paused, breaker_open). Defaults to otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if mp == nil {
			return errors.New("a meter provider is required")
		}
		c.meter = mp
		return nil
	})
}

// WithBreaker sets options of the per-destination circuit breakers (see
// package breaker; its defaults apply otherwise, and breaker.WithMaxBreakers
// bounds how many destinations have one). The publisher's classifier counts
// transport errors, timeouts, 5xx and 408 as failures, 429 as neither, and
// every other answer as a success; a message that cannot be sent (a malformed
// header, a forbidden address) is never counted. A breaker.WithClassifier
// given here replaces the classifier.
func WithBreaker(opts ...breaker.Option) Option {
	return newOption("WithBreaker", func(c *config) error {
		for i, o := range opts {
			if o == nil {
				return fmt.Errorf("breaker option %d is nil", i)
			}
		}
		c.breakerOpts = append(c.breakerOpts, opts...)
		return nil
	})
}

// WithResolver finds the endpoint of a destination that the static map given
// to New does not name: a platform that sends webhooks to its customers looks
// the URL and secrets up in its own table of subscriptions. resolve is called
// with the publish's context; its answers are cached (WithResolverCache), so
// an endpoint changed in the table (a new URL, a rotated secret) is used once
// its cached answer expires. An error matching ErrUnknownEndpoint means the
// destination has no endpoint: the message is dead-lettered (permanent). An
// endpoint that is not valid (as New checks the static map) is permanent too.
// Any other error is retried by the relay, and not counted against the
// destination's breaker. Every resolved endpoint gets its own breaker and
// pause, and the address check. By default there is no resolver: a
// destination outside the static map is unknown.
func WithResolver(resolve func(ctx context.Context, destination string) (Endpoint, error)) Option {
	return newOption("WithResolver", func(c *config) error {
		if resolve == nil {
			return errors.New("a resolver function is required")
		}
		c.resolve = resolve
		return nil
	})
}

// WithResolverCache bounds the cache of WithResolver's answers: at most size
// destinations (the least recently used is dropped first), each for ttl.
// size must be at least 1 and ttl positive. Defaults to 1000 destinations for
// 1 min. It needs WithResolver.
func WithResolverCache(size int, ttl time.Duration) Option {
	return newOption("WithResolverCache", func(c *config) error {
		if size < 1 {
			return fmt.Errorf("size %d must be at least 1", size)
		}
		if ttl <= 0 {
			return fmt.Errorf("ttl %v must be positive", ttl)
		}
		c.cacheSize, c.cacheTTL, c.cacheSet = size, ttl, true
		return nil
	})
}

// WithRateLimit keeps the deliveries to a destination within its quota:
// lim, keyed by the destination's name, so each destination has a quota of
// its own with lim's windows (ratelimit.WithLimit), shared by every replica
// when lim has a Store (ratelimit.WithStore). Given destinations, lim limits
// those only (give the option again, with another limiter, for destinations
// with another quota); given none, it limits every destination without a
// limiter of its own, those WithResolver finds included (lim's WithMaxKeys
// bounds how many it holds).
//
// The budget is taken by Throttle, which the relay calls before each
// delivery when it is given outbox.WithThrottle(p.Throttle): a destination
// without budget is held back in the relay's memory until it has some,
// without spending an attempt and without holding up other destinations.
// Publish takes no budget (the relay took it), and it gives every response of
// a limited destination to lim.Observe, so that what the endpoint announces
// (a 429's Retry-After, RateLimit and X-RateLimit-* headers) narrows the
// destination's quota before it has to refuse a request. Do not also wrap the
// client of WithUnguardedClient in a ratelimit.Transport: each delivery would
// take its budget twice. A nil lim, a destination named twice and the option
// without destinations given twice are errors. By default no destination is
// limited.
func WithRateLimit(lim *ratelimit.Limiter, destinations ...string) Option {
	return newOption("WithRateLimit", func(c *config) error {
		if lim == nil {
			return errors.New("a limiter is required")
		}
		if len(destinations) == 0 {
			if c.rateAll != nil {
				return errors.New("given twice without destinations: name the destinations of each limiter")
			}
			c.rateAll = lim
			return nil
		}
		if c.rateBy == nil {
			c.rateBy = make(map[string]*ratelimit.Limiter, len(destinations))
		}
		for _, d := range destinations {
			if d == "" {
				return errors.New("an empty destination")
			}
			if _, ok := c.rateBy[d]; ok {
				return fmt.Errorf("destination %q has a limiter already", d)
			}
			c.rateBy[d] = lim
		}
		return nil
	})
}

// validate checks the combinations of options, after all were applied.
func (c *config) validate() error {
	if c.client != nil && c.allowedSet {
		return option.Errorf("webhookpub", "New", "WithAllowedNetworks has no effect with WithUnguardedClient: the caller's client checks addresses, or nobody does")
	}
	if c.cacheSet && c.resolve == nil {
		return option.Errorf("webhookpub", "New", "WithResolverCache needs WithResolver")
	}
	return nil
}
