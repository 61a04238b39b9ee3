package natspub

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
	return option.Apply("natspub", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

// defaultMaxRedeliveryDelay is the relay's longest redelivery delay assumed
// unless WithMaxRedeliveryDelay says otherwise: one minute, the default of
// both the relay's lease and its maximum backoff.
const defaultMaxRedeliveryDelay = time.Minute

type config struct {
	maxRedelivery    time.Duration
	maxRedeliverySet bool
	allowShort       bool
	logger           *slog.Logger
}

// WithMaxRedeliveryDelay sets the longest time the relay may take to publish
// a message again: the larger of its lease (outbox.WithLease) and its
// maximum backoff (outbox.WithBackoff). New checks that the stream's
// duplicate window is at least that. It must be positive. Defaults to 1 min.
func WithMaxRedeliveryDelay(d time.Duration) Option {
	return newOption("WithMaxRedeliveryDelay", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%v must be positive", d)
		}
		c.maxRedelivery, c.maxRedeliverySet = d, true
		return nil
	})
}

// WithShortDuplicateWindow accepts a stream whose duplicate window is shorter
// than the relay's longest redelivery delay: New logs the risk at error level
// instead of refusing the stream. Consumers should then deduplicate on their
// own (see Consume). By default such a stream is refused.
func WithShortDuplicateWindow() Option {
	return newOption("WithShortDuplicateWindow", func(c *config) error {
		c.allowShort = true
		return nil
	})
}

// WithLogger sets the logger. Nothing is logged per message. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("a logger is required")
		}
		c.logger = l
		return nil
	})
}
