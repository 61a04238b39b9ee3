package rabbitpub

import (
	"errors"
	"fmt"
	"log/slog"

	amqp "github.com/rabbitmq/amqp091-go"

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
	amqp   amqp.Config
	logger *slog.Logger
}

// WithConfig sets the amqp091-go connection configuration: TLS
// (TLSClientConfig, or an amqps URL), SASL, heartbeat, frame size, client
// properties, a dialer. Fields left zero take the publisher's defaults: a
// heartbeat of 10 s, which bounds how long a silently dead connection goes
// unnoticed; the connection name "steadfast-outbox" (the connection_name
// property, shown in the management UI); and a dialer bounded by 30 s and by
// the context of New or of the Publish that reconnects, which also bounds the
// TLS and AMQP handshakes. A Dial of your own should bound both too
// (amqp.DefaultDial does). The heartbeat must not be negative. Defaults to
// amqp.Config{} with those defaults.
func WithConfig(cfg amqp.Config) Option {
	return newOption("WithConfig", func(c *config) error {
		if cfg.Heartbeat < 0 {
			return fmt.Errorf("heartbeat %v must not be negative", cfg.Heartbeat)
		}
		c.amqp = cfg
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
