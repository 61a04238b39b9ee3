package rabbitpub

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/steadfast-go/steadfast/internal/option"
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
	return option.Apply("rabbitpub", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

type config struct {
	dialTimeout time.Duration
	heartbeat   time.Duration
	name        string
	logger      *slog.Logger
}

// WithDialTimeout bounds dialing and the AMQP handshake (the caller's context
// bounds it too). It must be positive. Defaults to 30 s.
func WithDialTimeout(d time.Duration) Option {
	return newOption("WithDialTimeout", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%v must be positive", d)
		}
		c.dialTimeout = d
		return nil
	})
}

// WithHeartbeat sets the AMQP heartbeat interval, which bounds how long a
// silently dead connection goes unnoticed. It must be positive. Defaults to
// 10 s.
func WithHeartbeat(d time.Duration) Option {
	return newOption("WithHeartbeat", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%v must be positive", d)
		}
		c.heartbeat = d
		return nil
	})
}

// WithConnectionName sets the connection name shown in the RabbitMQ
// management UI. Defaults to "steadfast-outbox".
func WithConnectionName(name string) Option {
	return newOption("WithConnectionName", func(c *config) error {
		c.name = name
		return nil
	})
}

// WithLogger sets the logger: reconnections are logged at info level,
// nothing per message. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("a logger is required")
		}
		c.logger = l
		return nil
	})
}
