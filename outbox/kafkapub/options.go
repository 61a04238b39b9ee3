package kafkapub

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

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
	return option.Apply("kafkapub", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

type config struct {
	topics     []string
	clientOpts []kgo.Opt
}

// WithTopics names the topics the publisher may produce to. New checks that
// each exists, and Publish refuses (permanently) a message for any other
// topic. By default any topic is accepted and none is checked; a missing
// topic then fails each publish until it exists (or forever, if the
// cluster does not create topics).
func WithTopics(topics ...string) Option {
	return newOption("WithTopics", func(c *config) error {
		for _, t := range topics {
			if t == "" {
				return errors.New("empty topic name")
			}
		}
		c.topics = append(c.topics, topics...)
		return nil
	})
}

// WithClientOptions adds franz-go client options (TLS, SASL, timeouts,
// linger, hooks to observe the client), applied after the publisher's own:
// kgo.RequiredAcks(AllISRAcks) and kgo.ProducerLinger(0), since each Publish
// waits for its record anyway. Do not disable idempotent writes: the
// ordering guarantee depends on them. By default none is added.
func WithClientOptions(opts ...kgo.Opt) Option {
	return newOption("WithClientOptions", func(c *config) error {
		for _, o := range opts {
			if o == nil {
				return errors.New("a client option is nil")
			}
		}
		c.clientOpts = append(c.clientOpts, opts...)
		return nil
	})
}
