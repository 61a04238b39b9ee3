package ops

import (
	"errors"
	"log/slog"
	"net/http"
	"reflect"

	"github.com/steadfast-go/steadfast/internal/option"
)

// Option configures a Page. Options are made by the With functions of this
// package; New refuses, with an error naming it, an option that is invalid.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

func applyOptions(c *config, opts []Option) error {
	return option.Apply("ops", "New", c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

type config struct {
	outbox      outboxView
	idempotency IdempotencyStore
	limiters    []limiterSource
	catchup     CatchupStore
	who         func(*http.Request) string
	logger      *slog.Logger
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return rv.IsNil()
	}
	return false
}

// WithOutbox shows store's backlog and dead letters, and lets an operator
// requeue and discard them (with WithActions). store must not be nil. Off
// by default: the page has no outbox section.
func WithOutbox(store OutboxStore) Option {
	return newOption("WithOutbox", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		c.outbox = storeView{store}
		return nil
	})
}

// WithIdempotency lets an operator look an idempotency record up by scope,
// method, route and key, and release a stuck claim (with WithActions).
// store must not be nil. Off by default.
func WithIdempotency(store IdempotencyStore) Option {
	return newOption("WithIdempotency", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		c.idempotency = store
		return nil
	})
}

// WithActions enables the page's actions: requeue and discard dead
// letters, resume a paused destination, release an idempotency claim. Each
// is a POST guarded by net/http's CrossOriginProtection; discarding and
// releasing ask for confirmation first. who names the operator behind a
// request (from the user's own authentication: a session, a header set by
// its proxy); every action is logged with it at Info, and a request for
// which who returns "" is refused (403). who must not be nil. Off by
// default: the page only reads.
func WithActions(who func(r *http.Request) string) Option {
	return newOption("WithActions", func(c *config) error {
		if who == nil {
			return errors.New("who is nil")
		}
		c.who = who
		return nil
	})
}

// WithLogger sets the logger of the actions (at Info, with who did them)
// and of the stores' failures (at Warn). l must not be nil. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	})
}
