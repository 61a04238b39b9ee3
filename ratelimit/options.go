package ratelimit

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Defaults of the options; each option's documentation repeats its own.
const (
	defaultMaxKeys  = 10000
	defaultMaxPause = time.Minute
)

// Bounds of the options.
const (
	maxWindows  = 4
	maxReplicas = 1000
	maxBurst    = 1 << 20
)

// The constructors, as options name them.
const (
	ctorNew       = "New"
	ctorTransport = "NewTransport"
)

// Option configures a Limiter (New) or a Transport (NewTransport). Options
// are made by the With functions of this package; a constructor refuses, with
// an error naming it, an option that does not apply to it or makes no sense.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

// newOption makes an option named name; for lists the constructors it applies
// to (none: all).
func newOption(name string, set func(*config) error, for_ ...string) Option {
	return &optionFunc{Name: name, For: for_, Set: set}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("ratelimit", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

// config holds the settings of both constructors.
type config struct {
	// New
	limits   []Limit
	store    Store
	replicas int
	maxKeys  int
	logger   *slog.Logger
	meter    metric.MeterProvider
	maxPause time.Duration

	// NewTransport
	key func(*http.Request) string
}

// Limit is one window of a quota: at most Rate requests per Period, with
// bursts of up to Burst requests. A limiter enforces it as a token bucket
// (golang.org/x/time/rate locally, GCRA in a Store): Burst requests may go at
// once, and after that one every Period/Rate.
type Limit struct {
	// Rate is the number of requests per Period.
	Rate int
	// Period is the window of Rate.
	Period time.Duration
	// Burst is the most requests let through at once after an idle time.
	Burst int
}

// interval is the time between two requests at the sustained rate.
func (l Limit) interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// perSecond is the sustained rate in requests per second.
func (l Limit) perSecond() float64 { return float64(l.Rate) / l.Period.Seconds() }

func (l Limit) check() error {
	switch {
	case l.Rate < 1:
		return fmt.Errorf("rate %d must be at least 1", l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("period %v must be positive", l.Period)
	case l.Period/time.Duration(l.Rate) < time.Microsecond:
		return fmt.Errorf("%d per %v is more than one request per microsecond", l.Rate, l.Period)
	case l.Burst < 1 || l.Burst > maxBurst:
		return fmt.Errorf("burst %d must be in [1, %d]", l.Burst, maxBurst)
	}
	return nil
}

// WithLimit adds a window to the quota of every key: at most rate requests
// per period, in bursts of up to burst. Give it once per window, for example
// 100 per second with bursts of 25 and 10,000 per hour: a request goes when
// every window lets it. rate and burst must be at least 1, period positive,
// and at most 4 windows with different periods may be given. New requires at
// least one; there is no default.
func WithLimit(rate int, period time.Duration, burst int) Option {
	return newOption("WithLimit", func(c *config) error {
		l := Limit{Rate: rate, Period: period, Burst: burst}
		if err := l.check(); err != nil {
			return err
		}
		for _, o := range c.limits {
			if o.Period == period {
				return fmt.Errorf("a window of %v is already set", period)
			}
		}
		if len(c.limits) == maxWindows {
			return fmt.Errorf("at most %d windows", maxWindows)
		}
		c.limits = append(c.limits, l)
		return nil
	}, ctorNew)
}

// WithStore shares the quota of every key across the replicas of a service:
// each decision is one atomic call to s (for example a *redislimit.Store)
// that uses the store's clock, so that the replicas together stay under the
// quota, and what a Transport learns from a provider is written there too.
//
// A breaker guards s: after 3 failed decisions in a row (s unreachable, or
// slower than its own timeout) the limiter falls back at once to its share
// of the quota, every rate divided by replicas (the number of replicas the
// service expects to run), logs it once, and asks s again a second later;
// when s answers, the limiter logs it once and shares again. Neither switch
// lets a burst through: the local share starts after this replica's last
// request that s let through, with no budget saved up, and for two seconds
// after s came back the replica keeps to its local share as well, since the
// others may still be on theirs. A decision cut short by the caller's own
// deadline does not count as a failure of s. replicas must be in [1, 1000]
// and s not nil. By default the quota is local to the process.
func WithStore(s Store, replicas int) Option {
	return newOption("WithStore", func(c *config) error {
		if s == nil {
			return errors.New("store is nil")
		}
		if v := reflect.ValueOf(s); v.Kind() == reflect.Pointer && v.IsNil() {
			return fmt.Errorf("store is a nil %T", s)
		}
		if replicas < 1 || replicas > maxReplicas {
			return fmt.Errorf("replicas %d must be in [1, %d]", replicas, maxReplicas)
		}
		c.store, c.replicas = s, replicas
		return nil
	}, ctorNew)
}

// WithMaxKeys bounds the number of keys whose state the limiter holds in
// memory. When a new key arrives and the limiter is full, it forgets the keys
// that are idle (whose every window has its whole burst again, and that no
// provider announcement holds); if none is idle, the request fails with an
// error matching ErrTooManyKeys. n must be at least 1. Defaults to 10,000.
func WithMaxKeys(n int) Option {
	return newOption("WithMaxKeys", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("n %d must be at least 1", n)
		}
		c.maxKeys = n
		return nil
	}, ctorNew)
}

// WithLogger sets the logger of rate changes: a provider's announcement that
// lowers a key's rate or pauses it (at most one line a minute per key at
// info level, the others at debug level), and the switches to and from the
// local share of WithStore (one line each). Nothing is logged per request.
// l must not be nil. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	}, ctorNew)
}

// WithMeterProvider sets the OpenTelemetry meter provider of the metrics
// steadfast.ratelimit.waits, steadfast.ratelimit.wait.duration, steadfast.ratelimit.rejections and
// steadfast.ratelimit.rate (see Limiter). mp must not be nil. Defaults to
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if mp == nil {
			return errors.New("meter provider is nil")
		}
		c.meter = mp
		return nil
	}, ctorNew)
}

// WithKey sets how a Transport picks the key of a request (an account, an
// endpoint). f must not be nil. Defaults to the request's host
// (req.URL.Host, with its port).
func WithKey(f func(*http.Request) string) Option {
	return newOption("WithKey", func(c *config) error {
		if f == nil {
			return errors.New("key function is nil")
		}
		c.key = f
		return nil
	}, ctorTransport)
}

// WithMaxPause caps what the limiter believes of a provider (see
// Limiter.Observe and Transport): a Retry-After, or the reset of an
// announced budget, longer than d counts as d, so a malformed or hostile
// header never holds a key for long. d must be positive. Defaults to one
// minute.
func WithMaxPause(d time.Duration) Option {
	return newOption("WithMaxPause", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("pause %v must be positive", d)
		}
		c.maxPause = d
		return nil
	}, ctorNew)
}

// finishNew checks what involves several options of New and fills defaults.
func (c *config) finishNew() error {
	if len(c.limits) == 0 {
		return option.Errorf("ratelimit", ctorNew, "no limit: give at least one WithLimit")
	}
	slices.SortFunc(c.limits, func(a, b Limit) int { return cmp.Compare(a.Period, b.Period) })
	if c.maxKeys == 0 {
		c.maxKeys = defaultMaxKeys
	}
	if c.maxPause == 0 {
		c.maxPause = defaultMaxPause
	}
	return nil
}
