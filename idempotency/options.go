package idempotency

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Option configures Middleware. The options that also configure Do
// (WithLease, WithRetention, WithWait, WithLogger, WithMeterProvider,
// WithTransaction, WithStoreTimeout) are SharedOptions.
type Option interface {
	applyMiddleware(*middlewareConfig) error
}

// DoOption configures NewRunner, and Do for one call.
type DoOption interface {
	applyDo(*doConfig) error
}

// SharedOption configures both Middleware and Do.
type SharedOption interface {
	Option
	DoOption
}

// common holds the settings that Middleware and Do share.
type common struct {
	lease         time.Duration
	retention     time.Duration
	wait          time.Duration
	storeTimeout  time.Duration
	logger        *slog.Logger
	meterProvider metric.MeterProvider
	transaction   bool
}

type sharedOption func(*common) error

func (o sharedOption) applyMiddleware(c *middlewareConfig) error { return o(&c.common) }
func (o sharedOption) applyDo(c *doConfig) error                 { return o(&c.common) }

type middlewareOption func(*middlewareConfig) error

func (o middlewareOption) applyMiddleware(c *middlewareConfig) error { return o(c) }

type doOption func(*doConfig) error

func (o doOption) applyDo(c *doConfig) error { return o(c) }

// WithLease sets the lease of a claim: how long a key stays held after its
// holder stopped renewing it (because it died). The holder renews it every
// third of the lease while the work runs. Defaults to 30s.
func WithLease(d time.Duration) SharedOption {
	return sharedOption(func(c *common) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("idempotency: WithLease: %v is shorter than 10ms", d)
		}
		c.lease = d
		return nil
	})
}

// WithRetention sets how long a completed result is kept and replayed.
// Defaults to 24h.
func WithRetention(d time.Duration) SharedOption {
	return sharedOption(func(c *common) error {
		if d <= 0 {
			return fmt.Errorf("idempotency: WithRetention: %v is not positive", d)
		}
		c.retention = d
		return nil
	})
}

// WithWait sets how long a duplicate waits, polling the store, for work
// running elsewhere under the same key to finish, before it gives up: the
// middleware then answers 409, Do returns ErrInProgress. Zero means no wait.
// Defaults to 0 for Middleware (409 at once, with Retry-After) and 10s for
// Do.
func WithWait(d time.Duration) SharedOption {
	return sharedOption(func(c *common) error {
		if d < 0 {
			return fmt.Errorf("idempotency: WithWait: %v is negative", d)
		}
		c.wait = d
		return nil
	})
}

// WithStoreTimeout bounds the store calls made after the work ran (storing
// its result, releasing the claim, with their retries), which use a context
// detached from the caller's so that a client that went away does not leave
// a claim behind. Defaults to 5s.
func WithStoreTimeout(d time.Duration) SharedOption {
	return sharedOption(func(c *common) error {
		if d <= 0 {
			return fmt.Errorf("idempotency: WithStoreTimeout: %v is not positive", d)
		}
		c.storeTimeout = d
		return nil
	})
}

// WithLogger sets the logger. Nothing is logged per request at info level or
// above, except failures that may let work run twice (a result that could not
// be stored), at error level, and store failures, at warn level. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) SharedOption {
	return sharedOption(func(c *common) error {
		if l == nil {
			return errors.New("idempotency: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counters
// (see the package documentation). Defaults to otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) SharedOption {
	return sharedOption(func(c *common) error {
		if mp == nil {
			return errors.New("idempotency: WithMeterProvider: nil provider")
		}
		c.meterProvider = mp
		return nil
	})
}

// WithTransaction turns on transactional mode: the store must be a TxStore;
// the key is claimed with ClaimTx, the work runs with the transaction in its
// context (TxFrom), and its result is stored by Tx.Commit together with the
// work's own writes, or everything is undone by Tx.Rollback when the work
// fails in a way that is not final. The claim's row lock holds duplicates
// until the commit, so the lease is not renewed. Defaults to off.
func WithTransaction() SharedOption {
	return sharedOption(func(c *common) error {
		c.transaction = true
		return nil
	})
}

func defaultCommon() common {
	return common{
		lease:        30 * time.Second,
		retention:    24 * time.Hour,
		storeTimeout: 5 * time.Second,
	}
}

// finish completes a configuration once every option has been applied: it
// validates it against store, defaults the logger and makes the metric
// instruments of kind ("http" or "do").
func (c *common) finish(store Store, kind string) (*metrics, error) {
	if err := c.validate(store); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return newMetrics(c.meterProvider, kind)
}

// validate checks what no single option can: the settings together, and the
// store against them.
func (c *common) validate(store Store) error {
	if store == nil {
		return errors.New("idempotency: nil store")
	}
	if c.lease >= c.retention {
		return fmt.Errorf("idempotency: WithLease: lease %v is not shorter than the retention %v", c.lease, c.retention)
	}
	if c.transaction {
		if _, ok := store.(TxStore); !ok {
			return fmt.Errorf("idempotency: WithTransaction: store %T is not a TxStore", store)
		}
	}
	return nil
}

// The middleware-only options.

// WithKeySource sets where the middleware finds a request's key. Defaults to
// HeaderKey("Idempotency-Key").
func WithKeySource(src KeySource) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		if src == nil {
			return errors.New("idempotency: WithKeySource: nil source")
		}
		c.keySource = src
		return nil
	})
}

// WithOptionalKey lets requests without a key through to the handler,
// unprotected. Defaults to off: a request without a key gets 400.
func WithOptionalKey() Option {
	return middlewareOption(func(c *middlewareConfig) error {
		c.optional = true
		return nil
	})
}

// WithScope sets the function that names the caller a key belongs to (a
// tenant, an account, a principal), so that one caller's key never replays
// another's response. Defaults to none: every caller shares one namespace,
// still split by method and route.
func WithScope(scope func(*http.Request) string) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		if scope == nil {
			return errors.New("idempotency: WithScope: nil func")
		}
		c.scope = scope
		return nil
	})
}

// WithRoute sets the function that names a request's route, part of its
// key's namespace. Defaults to the ServeMux pattern that matched
// (r.Pattern), else the path: put the middleware inside the mux, around each
// handler, for the pattern to be known.
func WithRoute(route func(*http.Request) string) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		if route == nil {
			return errors.New("idempotency: WithRoute: nil func")
		}
		c.route = route
		return nil
	})
}

// WithCanonicalJSON makes the fingerprint read a JSON body as its canonical
// form (object members sorted, insignificant white space dropped), so that a
// client that re-encodes the same document is not told it changed it. A body
// that is not JSON is fingerprinted byte for byte. Defaults to off: byte for
// byte.
func WithCanonicalJSON() Option {
	return middlewareOption(func(c *middlewareConfig) error {
		c.canonicalJSON = true
		return nil
	})
}

// WithStoredHeaders sets the response headers stored and replayed. Set-Cookie,
// Authorization, Proxy-Authorization and WWW-Authenticate are never stored:
// naming one is an error. Defaults to Content-Type, Content-Language,
// Content-Encoding, Content-Location, Location, ETag, Last-Modified, Link and
// Cache-Control.
func WithStoredHeaders(names ...string) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		canon := make([]string, 0, len(names))
		for _, n := range names {
			cn := http.CanonicalHeaderKey(n)
			if neverStored(cn) {
				return fmt.Errorf("idempotency: WithStoredHeaders: %s must never be stored", cn)
			}
			if cn == "" {
				return errors.New("idempotency: WithStoredHeaders: empty header name")
			}
			canon = append(canon, cn)
		}
		c.storedHeaders = canon
		return nil
	})
}

// neverStored reports whether the canonical header name is one that a replay
// must never hand to whoever holds the key.
func neverStored(name string) bool {
	switch name {
	case "Set-Cookie", "Authorization", "Proxy-Authorization", "Www-Authenticate":
		return true
	}
	return false
}

// WithMaxBodyBytes bounds the request body the middleware reads (to
// fingerprint it); a larger one gets 413 and the handler does not run.
// Defaults to 1 MiB.
func WithMaxBodyBytes(n int64) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		if n <= 0 {
			return fmt.Errorf("idempotency: WithMaxBodyBytes: %d is not positive", n)
		}
		c.maxBody = n
		return nil
	})
}

// WithMaxResponseBytes bounds the response body that is stored. A larger
// response is still sent; what is stored is a marker, so that a retry gets a
// 422 problem saying that the response was too large to keep, rather than
// running the handler again. Defaults to 1 MiB.
func WithMaxResponseBytes(n int) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		if n <= 0 {
			return fmt.Errorf("idempotency: WithMaxResponseBytes: %d is not positive", n)
		}
		c.maxResponse = n
		return nil
	})
}

// WithFinalStatus sets which response statuses are final: stored and
// replayed. The claim of any other status is released, so that a retry runs
// the handler again. Defaults to DefaultFinalStatus.
func WithFinalStatus(final func(status int) bool) Option {
	return middlewareOption(func(c *middlewareConfig) error {
		if final == nil {
			return errors.New("idempotency: WithFinalStatus: nil func")
		}
		c.final = final
		return nil
	})
}

// DefaultFinalStatus reports whether the middleware stores a response with
// status by default: every status below 500 except 408, 409 and 429, which
// say that nothing was done and the client should try again. (The IETF draft
// speaks of 2xx and 4xx; a 3xx, such as the 303 that follows a POST, is the
// outcome of work done, and is stored too.)
func DefaultFinalStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return false
	}
	return status < 500
}

// WithFailOpen makes the middleware run the handler, unprotected, when the
// store fails or is full, instead of answering 503. Defaults to off (fail
// closed).
func WithFailOpen() Option {
	return middlewareOption(func(c *middlewareConfig) error {
		c.failOpen = true
		return nil
	})
}

// The Do-only options.

// WithCodec sets how Do encodes the function's result for the store.
// Defaults to JSONCodec.
func WithCodec(codec Codec) DoOption {
	return doOption(func(c *doConfig) error {
		if codec == nil {
			return errors.New("idempotency: WithCodec: nil codec")
		}
		c.codec = codec
		return nil
	})
}

// WithFingerprint gives Do the input of the work: a caller that uses the same
// key with a different input gets ErrFingerprintMismatch instead of another
// input's result. Only its SHA-256 is kept. Defaults to none: any input
// matches.
func WithFingerprint(input []byte) DoOption {
	return doOption(func(c *doConfig) error {
		c.fingerprint = fingerprintBytes(input)
		return nil
	})
}
