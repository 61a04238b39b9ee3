package redislimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/ratelimit"
)

//go:embed limiter.lua
var source string

// Defaults of the options; each option's documentation repeats its own.
const (
	defaultPrefix  = "steadfast:ratelimit:"
	defaultTimeout = 50 * time.Millisecond
)

// maxDelay bounds the delays sent to the script (a year), so that no
// arithmetic in it overflows a double's exact integers.
const maxDelay = 366 * 24 * time.Hour

// Option configures a Store. Options are made by the With functions of this
// package; New refuses, with an error naming it, an option that makes no
// sense.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

type config struct {
	prefix  string
	timeout time.Duration
}

// WithPrefix sets the prefix of the Redis keys: key k is stored in the hash
// <prefix>{k}. Replicas that share a quota use the same prefix (and the same
// limits). p must not be empty. Defaults to "steadfast:ratelimit:".
func WithPrefix(p string) Option {
	return newOption("WithPrefix", func(c *config) error {
		if p == "" {
			return errors.New("prefix is empty")
		}
		c.prefix = p
		return nil
	})
}

// WithTimeout bounds each call to Redis: a decision that takes longer fails,
// and the Limiter counts it toward falling back to its local share. d must be
// positive. Defaults to 50ms.
func WithTimeout(d time.Duration) Option {
	return newOption("WithTimeout", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("timeout %v must be positive", d)
		}
		c.timeout = d
		return nil
	})
}

// Store keeps the quotas of a ratelimit.Limiter in Redis, for every replica
// of a service: give it to ratelimit.WithStore. Each decision is one EVALSHA
// of one Lua script, atomic, on the server's clock (GCRA, one hash per key:
// a key's windows, the limit a provider announced for it and its pause live
// together, so they are in one slot of a Redis Cluster). A key's hash expires
// once it holds nothing that a new one would not. Store is safe for
// concurrent use.
type Store struct {
	client  redis.UniversalClient
	script  *redis.Script
	prefix  string
	timeout time.Duration
}

var _ ratelimit.Store = (*Store)(nil)

// New returns a Store over client. The client must respect context deadlines
// (redis.Options.ContextTimeoutEnabled: true, and the same in the Cluster,
// Ring and Failover options): otherwise a Redis that hangs holds each
// decision for the client's read timeout (3 seconds by default) instead of
// WithTimeout, and New refuses the client. It returns an error for a nil
// client and one naming the option at fault. It starts nothing.
func New(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redislimit: New: client is nil")
	}
	if v := reflect.ValueOf(client); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("redislimit: New: client is a nil %T", client)
	}
	cfg := config{prefix: defaultPrefix, timeout: defaultTimeout}
	err := option.Apply("redislimit", "New", &cfg, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
	if err != nil {
		return nil, err
	}
	if !contextTimeouts(client) {
		return nil, errors.New("redislimit: New: the client ignores context deadlines: set ContextTimeoutEnabled: true in its options, so that a hung Redis fails a decision within WithTimeout")
	}
	return &Store{client: client, script: redis.NewScript(source), prefix: cfg.prefix, timeout: cfg.timeout}, nil
}

// contextTimeouts reports whether client bounds its calls by their context's
// deadline, for the clients of go-redis; others are trusted.
func contextTimeouts(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

func (s *Store) key(k string) string { return s.prefix + "{" + k + "}" }

func micros(d time.Duration) int64 { return int64(min(max(d, 0), maxDelay) / time.Microsecond) }

// Reserve implements ratelimit.Store: one EVALSHA.
func (s *Store) Reserve(ctx context.Context, key string, limits []ratelimit.Limit, after, maxWait time.Duration) (time.Duration, error) {
	var argv [4 + 2*4]any
	args := append(argv[:0], "reserve", micros(after), micros(maxWait), len(limits))
	for _, l := range limits {
		e := micros(l.Period / time.Duration(max(l.Rate, 1)))
		args = append(args, e, e*int64(max(l.Burst-1, 0)))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res, err := s.script.Run(ctx, s.client, []string{s.key(key)}, args...).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("redislimit: reserve %q: %w", key, err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("redislimit: reserve %q: unexpected reply %v", key, res)
	}
	return time.Duration(res[1]) * time.Microsecond, nil
}

// Pause implements ratelimit.Store.
func (s *Store) Pause(ctx context.Context, key string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.script.Run(ctx, s.client, []string{s.key(key)}, "pause", micros(d)).Err(); err != nil {
		return fmt.Errorf("redislimit: pause %q: %w", key, err)
	}
	return nil
}

// Learn implements ratelimit.Store.
func (s *Store) Learn(ctx context.Context, key string, announced ratelimit.Limit, validFor, inFlight time.Duration) error {
	if announced.Rate < 1 || announced.Period <= 0 {
		return fmt.Errorf("redislimit: learn %q: %d per %v is not a limit", key, announced.Rate, announced.Period)
	}
	e := max(1, micros(announced.Period/time.Duration(announced.Rate)))
	tau := e * int64(max(announced.Burst-1, 0))
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := s.script.Run(ctx, s.client, []string{s.key(key)}, "learn", e, tau, micros(validFor), micros(inFlight)).Err()
	if err != nil {
		return fmt.Errorf("redislimit: learn %q: %w", key, err)
	}
	return nil
}
