package idempotency

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Option configures Middleware, NewRunner (and Do, for one call) and
// NewMemoryStore. Options are made by the With functions of this package;
// a constructor refuses, with an error naming it, an option that does not
// apply to it. Each With function says which constructors it applies to.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

// The constructors, as option.Apply names them.
const (
	ctorMiddleware = "Middleware"
	ctorRunner     = "NewRunner"
	ctorDo         = "Do"
	ctorMemory     = "NewMemoryStore"
)

var (
	forWork       = []string{ctorMiddleware, ctorRunner, ctorDo}
	forMiddleware = []string{ctorMiddleware}
	forDo         = []string{ctorRunner, ctorDo}
	forMemory     = []string{ctorMemory}
)

func newOption(name string, for_ []string, set func(*config) error) Option {
	return &optionFunc{Name: name, For: for_, Set: set}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("idempotency", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

// config holds every setting of the package; each constructor reads its
// own.
type config struct {
	// Middleware and Do.
	lease, retention, wait, storeTimeout, maxTx time.Duration
	leaseSet, retentionSet                      bool
	logger                                      *slog.Logger
	meterProvider                               metric.MeterProvider
	transaction                                 bool

	// Middleware.
	keySource     KeySource
	optional      bool
	scope         func(*http.Request) string
	route         func(*http.Request) string
	canonicalJSON bool
	ignoreQuery   bool
	storedHeaders []string
	maxBody       int64
	maxResponse   int
	final         func(status int) bool
	failOpen      bool

	// Do.
	codec       Codec
	fingerprint string

	// NewMemoryStore.
	maxRecords int
	maxBytes   int64
	scopeShare float64
}

// Defaults.
const (
	defaultLease        = 30 * time.Second
	defaultRetention    = 24 * time.Hour
	defaultStoreTimeout = 5 * time.Second
	defaultMaxTx        = time.Minute
	defaultDoWait       = 10 * time.Second
)

func defaultConfig() config {
	return config{
		lease:        defaultLease,
		retention:    defaultRetention,
		storeTimeout: defaultStoreTimeout,
		maxTx:        defaultMaxTx,
	}
}

// WithLease sets the lease of a claim: how long a key stays held after its
// holder stopped renewing it (because it died). The holder renews it every
// third of the lease while the work runs. It must be at least 10ms and
// shorter than the retention. Defaults to 30s. For Middleware, NewRunner and
// Do.
func WithLease(d time.Duration) Option {
	return newOption("WithLease", forWork, func(c *config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("lease %v is shorter than 10ms", d)
		}
		c.lease, c.leaseSet = d, true
		return nil
	})
}

// WithRetention sets how long a completed result is kept and replayed. It
// must be longer than the lease. Defaults to 24h. For Middleware, NewRunner
// and Do.
func WithRetention(d time.Duration) Option {
	return newOption("WithRetention", forWork, func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("retention %v is not positive", d)
		}
		c.retention, c.retentionSet = d, true
		return nil
	})
}

// WithWait sets how long a duplicate waits, polling the store, for work
// running elsewhere under the same key to finish, before it gives up: the
// middleware then answers 409, Do returns ErrInProgress. Zero means no wait.
// Defaults to 0 for Middleware (409 at once, with Retry-After) and 10s for
// NewRunner and Do.
func WithWait(d time.Duration) Option {
	return newOption("WithWait", forWork, func(c *config) error {
		if d < 0 {
			return fmt.Errorf("wait %v is negative", d)
		}
		c.wait = d
		return nil
	})
}

// WithStoreTimeout bounds the store calls made after the work ran (storing
// its result, releasing the claim, with their retries), which use a context
// detached from the caller's so that a client that went away does not leave
// a claim behind. Defaults to 5s. For Middleware, NewRunner and Do.
func WithStoreTimeout(d time.Duration) Option {
	return newOption("WithStoreTimeout", forWork, func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("timeout %v is not positive", d)
		}
		c.storeTimeout = d
		return nil
	})
}

// WithLogger sets the logger. Nothing is logged per request at info level or
// above, except failures that may let work run twice (a result that could not
// be stored), at error level, and store failures, at warn level. Defaults to
// slog.Default(). For Middleware, NewRunner and Do.
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", forWork, func(c *config) error {
		if l == nil {
			return errors.New("nil logger")
		}
		c.logger = l
		return nil
	})
}

// WithMeterProvider sets the OpenTelemetry meter provider of the counters
// (see the package documentation). Defaults to otel.GetMeterProvider(). For
// Middleware, NewRunner and Do.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", forWork, func(c *config) error {
		if mp == nil {
			return errors.New("nil meter provider")
		}
		c.meterProvider = mp
		return nil
	})
}

// WithTransaction turns on transactional mode: the store must be a TxStore
// (idempotency/sqlstore). Each request (keyless ones too) or call runs in a
// transaction of its own that the store begins with the claim; the work
// writes in it (TxFrom), and its result is stored and committed together
// with those writes, or everything is rolled back when the work fails in a
// way that is not final. See TxFrom for the rules. The transaction outlives
// a client that went away, bounded by WithMaxTxDuration. The claim's row
// lock holds duplicates until the commit, so the lease is not renewed. It
// cannot be combined with WithFailOpen (a store that is down cannot begin a
// transaction). Defaults to off. For Middleware, NewRunner and Do.
func WithTransaction() Option {
	return newOption("WithTransaction", forWork, func(c *config) error {
		c.transaction = true
		return nil
	})
}

// WithMaxTxDuration bounds a transaction of transactional mode
// (WithTransaction), from its beginning to its commit: the work and the
// commit must be done by then, or everything is rolled back (and the
// middleware answers 503). The transaction is detached from the client, so
// that the answer of a handler that finished is stored even if the client
// left. Defaults to 1m. For Middleware, NewRunner and Do.
func WithMaxTxDuration(d time.Duration) Option {
	return newOption("WithMaxTxDuration", forWork, func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("duration %v is not positive", d)
		}
		c.maxTx = d
		return nil
	})
}

// WithKeySource sets where the middleware finds a request's key. Defaults to
// HeaderKey(DefaultKeyHeader). For Middleware.
func WithKeySource(src KeySource) Option {
	return newOption("WithKeySource", forMiddleware, func(c *config) error {
		if src == nil {
			return errors.New("nil key source")
		}
		c.keySource = src
		return nil
	})
}

// WithOptionalKey lets requests without a key through to the handler,
// unprotected (in transactional mode, still in a transaction). Defaults to
// off: a request without a key gets 400. For Middleware.
func WithOptionalKey() Option {
	return newOption("WithOptionalKey", forMiddleware, func(c *config) error {
		c.optional = true
		return nil
	})
}

// WithScope sets the function that names the caller a key belongs to (a
// tenant, an account, a principal), so that one caller's key never replays
// another's response. Defaults to none: every caller shares one namespace,
// still split by method and route. For Middleware.
func WithScope(scope func(*http.Request) string) Option {
	return newOption("WithScope", forMiddleware, func(c *config) error {
		if scope == nil {
			return errors.New("nil func")
		}
		c.scope = scope
		return nil
	})
}

// WithRoute sets the function that names a request's route, part of its
// key's namespace. Defaults to the ServeMux pattern that matched
// (r.Pattern), else the path: put the middleware inside the mux, around each
// handler, for the pattern to be known. For Middleware.
func WithRoute(route func(*http.Request) string) Option {
	return newOption("WithRoute", forMiddleware, func(c *config) error {
		if route == nil {
			return errors.New("nil func")
		}
		c.route = route
		return nil
	})
}

// WithCanonicalJSON makes the fingerprint read a JSON body as its canonical
// form (object members sorted, insignificant white space dropped), so that a
// client that re-encodes the same document is not told it changed it. A body
// that is not JSON is fingerprinted byte for byte. Defaults to off: byte for
// byte. For Middleware.
func WithCanonicalJSON() Option {
	return newOption("WithCanonicalJSON", forMiddleware, func(c *config) error {
		c.canonicalJSON = true
		return nil
	})
}

// WithoutQuery leaves the query string out of the fingerprint, for clients
// that add parameters of their own (tracking, cache busting) to their
// retries. Defaults to off: the query is part of the fingerprint, so that
// POST /transfer?to=a and ?to=b under one key are told apart (422). For
// Middleware.
func WithoutQuery() Option {
	return newOption("WithoutQuery", forMiddleware, func(c *config) error {
		c.ignoreQuery = true
		return nil
	})
}

// WithStoredHeaders sets the response headers stored and replayed. Set-Cookie,
// Authorization, Proxy-Authorization and WWW-Authenticate are never stored:
// naming one is an error. Defaults to Content-Type, Content-Language,
// Content-Encoding, Content-Location, Location, ETag, Last-Modified, Link and
// Cache-Control. For Middleware.
func WithStoredHeaders(names ...string) Option {
	return newOption("WithStoredHeaders", forMiddleware, func(c *config) error {
		canon := make([]string, 0, len(names))
		for _, n := range names {
			cn := http.CanonicalHeaderKey(n)
			if neverStored(cn) {
				return fmt.Errorf("%s must never be stored", cn)
			}
			if cn == "" {
				return errors.New("empty header name")
			}
			if slices.Contains(canon, cn) {
				continue // a name given twice is stored once
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
// Defaults to 1 MiB. For Middleware.
func WithMaxBodyBytes(n int64) Option {
	return newOption("WithMaxBodyBytes", forMiddleware, func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%d is not positive", n)
		}
		c.maxBody = n
		return nil
	})
}

// WithMaxResponseBytes bounds the response body that is stored. A larger
// response is still sent; what is stored is a marker, so that a retry gets a
// 422 problem saying that the response was too large to keep, rather than
// running the handler again. The same happens when the store refuses a
// response as too large (ErrTooLarge). Defaults to 1 MiB. For Middleware.
func WithMaxResponseBytes(n int) Option {
	return newOption("WithMaxResponseBytes", forMiddleware, func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%d is not positive", n)
		}
		c.maxResponse = n
		return nil
	})
}

// WithFinalStatus sets which response statuses are final: stored and
// replayed. The claim of any other status is released, so that a retry runs
// the handler again. Defaults to DefaultFinalStatus. For Middleware.
func WithFinalStatus(final func(status int) bool) Option {
	return newOption("WithFinalStatus", forMiddleware, func(c *config) error {
		if final == nil {
			return errors.New("nil func")
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
// store fails or is full, instead of answering 503. It cannot be combined
// with WithTransaction. Defaults to off (fail closed). For Middleware.
func WithFailOpen() Option {
	return newOption("WithFailOpen", forMiddleware, func(c *config) error {
		c.failOpen = true
		return nil
	})
}

// WithCodec sets how Do encodes the function's result for the store.
// Defaults to encoding/json. For NewRunner and Do.
func WithCodec(codec Codec) Option {
	return newOption("WithCodec", forDo, func(c *config) error {
		if codec == nil {
			return errors.New("nil codec")
		}
		c.codec = codec
		return nil
	})
}

// WithFingerprint gives Do the input of the work: a caller that uses the same
// key with a different input gets ErrFingerprintMismatch instead of another
// input's result. Only its SHA-256 is kept. Defaults to none: any input
// matches. For NewRunner and Do.
func WithFingerprint(input []byte) Option {
	return newOption("WithFingerprint", forDo, func(c *config) error {
		c.fingerprint = fingerprintBytes(input)
		return nil
	})
}

// finish completes a configuration of Middleware, NewRunner or Do once every
// option has been applied: it validates it against store, defaults the
// logger and makes the metric instruments of kind ("http" or "do").
func (c *config) finish(ctor string, store Store, kind string) (*metrics, error) {
	if err := c.validate(ctor, store); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return newMetrics(c.meterProvider, kind)
}

// validate checks what no single option can: the settings together, and the
// store against them. The error names the option the user gave.
func (c *config) validate(ctor string, store Store) error {
	if store == nil {
		return option.Errorf("idempotency", ctor, "nil store")
	}
	if c.lease >= c.retention {
		switch {
		case c.leaseSet && c.retentionSet:
			return option.Errorf("idempotency", ctor, "WithLease %v must be shorter than WithRetention %v", c.lease, c.retention)
		case c.retentionSet:
			return option.Errorf("idempotency", ctor, "WithRetention %v must be longer than the lease (%v, WithLease's default)", c.retention, c.lease)
		default:
			return option.Errorf("idempotency", ctor, "WithLease %v must be shorter than the retention (%v, WithRetention's default)", c.lease, c.retention)
		}
	}
	if c.transaction {
		if _, ok := store.(TxStore); !ok {
			return option.Errorf("idempotency", ctor, "WithTransaction needs a TxStore (idempotency/sqlstore), not %T", store)
		}
		if c.failOpen {
			return option.Errorf("idempotency", ctor, "WithTransaction cannot be combined with WithFailOpen: a store that is down cannot begin the transaction the handler writes in")
		}
	}
	return nil
}
