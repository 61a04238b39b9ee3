package natspub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
)

// DefaultMaxRedeliveryDelay is the relay's longest redelivery delay assumed
// unless WithMaxRedeliveryDelay says otherwise: one minute, the default of
// both the relay's lease and its maximum backoff.
const DefaultMaxRedeliveryDelay = time.Minute

// ErrDuplicateWindowTooShort is matched by the error of New when the stream's
// duplicate window is shorter than the relay's longest redelivery delay;
// see DuplicateWindowError.
var ErrDuplicateWindowTooShort = errors.New("natspub: stream duplicate window too short")

// ErrSubjectNotInStream is matched by the (permanent) error of Publish for a
// message whose topic is not one of the stream's subjects.
var ErrSubjectNotInStream = errors.New("natspub: subject not bound to the stream")

// DuplicateWindowError says that a stream deduplicates for a shorter time
// than the relay may take to publish a message again.
type DuplicateWindowError struct {
	// Stream is the stream's name.
	Stream string
	// Window is the stream's duplicate window.
	Window time.Duration
	// Needed is the relay's longest redelivery delay.
	Needed time.Duration
}

// Error names the stream and both durations.
func (e *DuplicateWindowError) Error() string {
	return fmt.Sprintf("natspub: stream %q deduplicates for %v, shorter than the relay's longest redelivery delay %v: a message published again after the window would be stored twice (raise the stream's Duplicates, or accept with WithShortDuplicateWindow)",
		e.Stream, e.Window, e.Needed)
}

// Is reports whether target is ErrDuplicateWindowTooShort.
func (e *DuplicateWindowError) Is(target error) bool { return target == ErrDuplicateWindowTooShort }

// Option configures a Publisher.
type Option func(*config) error

type config struct {
	maxRedelivery time.Duration
	allowShort    bool
	logger        *slog.Logger
}

// WithMaxRedeliveryDelay sets the longest time the relay may take to publish
// a message again: the larger of its lease (outbox.WithLease) and its
// maximum backoff (outbox.WithBackoff). New checks that the stream's
// duplicate window is at least that. It must be positive. Defaults to
// DefaultMaxRedeliveryDelay (1 min).
func WithMaxRedeliveryDelay(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("natspub: WithMaxRedeliveryDelay(%v): must be positive", d)
		}
		c.maxRedelivery = d
		return nil
	}
}

// WithShortDuplicateWindow accepts a stream whose duplicate window is shorter
// than the relay's longest redelivery delay: New logs the risk at error level
// instead of refusing the stream. Consumers should then deduplicate on their
// own (see Consume). By default such a stream is refused.
func WithShortDuplicateWindow() Option {
	return func(c *config) error {
		c.allowShort = true
		return nil
	}
}

// WithLogger sets the logger. Nothing is logged per message. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("natspub: WithLogger(nil): a logger is required")
		}
		c.logger = l
		return nil
	}
}

// Publisher publishes outbox messages to one JetStream stream. It implements
// outbox.Publisher and is safe for concurrent use. It does not own the NATS
// connection: the caller closes it, after the relay stopped. nats.go
// reconnects on its own; publishes fail (and are retried by the relay) while
// it is disconnected.
type Publisher struct {
	js       jetstream.JetStream
	stream   string
	subjects []string
	window   time.Duration
}

var _ outbox.Publisher = (*Publisher)(nil)

// New returns a Publisher to the stream named stream. It looks the stream up
// and refuses it when it does not exist (an error matching
// jetstream.ErrStreamNotFound), binds no subject, or deduplicates for less
// than the relay's longest redelivery delay (a *DuplicateWindowError, unless
// WithShortDuplicateWindow). It returns an error naming an invalid option.
func New(ctx context.Context, js jetstream.JetStream, stream string, opts ...Option) (*Publisher, error) {
	c := config{maxRedelivery: DefaultMaxRedeliveryDelay}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if js == nil {
		return nil, errors.New("natspub: a JetStream context is required")
	}
	if stream == "" {
		return nil, errors.New("natspub: a stream name is required")
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("natspub: stream %q: %w", stream, err)
	}
	info := s.CachedInfo()
	if len(info.Config.Subjects) == 0 {
		return nil, fmt.Errorf("natspub: stream %q binds no subject", stream)
	}
	// A zero Duplicates in a stream's config means the server default,
	// which the server reports in the info it returns.
	window := info.Config.Duplicates
	if window < c.maxRedelivery {
		werr := &DuplicateWindowError{Stream: stream, Window: window, Needed: c.maxRedelivery}
		if !c.allowShort {
			return nil, werr
		}
		c.logger.ErrorContext(ctx, "natspub: duplicates possible", slog.String("error", werr.Error()))
	}
	return &Publisher{js: js, stream: stream, subjects: info.Config.Subjects, window: window}, nil
}

// DuplicateWindow returns the stream's duplicate window as seen by New.
func (p *Publisher) DuplicateWindow() time.Duration { return p.window }

// Publish publishes d to the subject d.Topic with d.ID as Nats-Msg-Id and
// d.Headers as headers, and returns nil once the stream stored it (or
// recognised it as a duplicate within its window). A topic that is not one
// of the stream's subjects, a message too large for the server, or a subject
// bound to another stream is a permanent error; anything else (no stream
// leader, timeouts, a lost connection) is retried by the relay. d.Key is not
// sent: the relay already hands over the messages of a key one at a time,
// so they are stored in order.
func (p *Publisher) Publish(ctx context.Context, d outbox.Delivery) error {
	if !p.bound(d.Topic) {
		return retry.Permanent(fmt.Errorf("%w: %q is not one of %q of stream %q", ErrSubjectNotInStream, d.Topic, p.subjects, p.stream))
	}
	msg := &nats.Msg{Subject: d.Topic, Data: d.Payload}
	if len(d.Headers) > 0 {
		msg.Header = make(nats.Header, len(d.Headers)+1)
		for k, v := range d.Headers {
			msg.Header.Set(k, v)
		}
	}
	_, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(d.ID), jetstream.WithExpectStream(p.stream))
	if err == nil {
		return nil
	}
	err = fmt.Errorf("natspub: publish %s to %q: %w", d.ID, d.Topic, err)
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject):
		return retry.Permanent(err)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStreamNotMatch:
		return retry.Permanent(err)
	}
	return err
}

// jsErrCodeStreamNotMatch is the JetStream API error "expected stream does
// not match": the subject is bound to another stream.
const jsErrCodeStreamNotMatch jetstream.ErrorCode = 10060

func (p *Publisher) bound(subject string) bool {
	for _, pattern := range p.subjects {
		if subjectMatches(pattern, subject) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether subject matches the NATS subject pattern,
// where "*" matches one token and a final ">" one or more.
func subjectMatches(pattern, subject string) bool {
	if subject == "" {
		return false
	}
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case st == "":
			return false
		case pt == ">" && !pmore:
			return true
		case pt != "*" && pt != st:
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}
