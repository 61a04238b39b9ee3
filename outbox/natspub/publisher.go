package natspub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
)

// ErrDuplicateWindowTooShort is matched by the error of New when the stream's
// duplicate window is shorter than the relay's longest redelivery delay
// (WithMaxRedeliveryDelay): a message published again after the window would
// be stored twice. The error names the stream and both durations.
var ErrDuplicateWindowTooShort = errors.New("natspub: stream duplicate window too short")

// ErrSubjectNotInStream is matched by the (permanent) error of Publish for a
// message whose topic is not one of the stream's subjects.
var ErrSubjectNotInStream = errors.New("natspub: subject not bound to the stream")

// Publisher publishes outbox messages to one JetStream stream. It implements
// outbox.Publisher and is safe for concurrent use. It does not own the NATS
// connection: the caller closes it, after the relay stopped. nats.go
// reconnects on its own; publishes fail (and are retried by the relay) while
// it is disconnected.
type Publisher struct {
	js       jetstream.JetStream
	stream   string
	subjects []string
}

var _ outbox.Publisher = (*Publisher)(nil)

// New returns a Publisher to the stream named stream. It looks the stream up
// and refuses it when it does not exist (an error matching
// jetstream.ErrStreamNotFound), binds no subject, or deduplicates for less
// than the relay's longest redelivery delay (an error matching
// ErrDuplicateWindowTooShort, unless WithShortDuplicateWindow). It returns an
// error naming an invalid or nil option, and one for a nil js.
func New(ctx context.Context, js jetstream.JetStream, stream string, opts ...Option) (*Publisher, error) {
	c := config{maxRedelivery: defaultMaxRedeliveryDelay}
	if err := applyOptions("New", &c, opts); err != nil {
		return nil, err
	}
	if js == nil {
		return nil, errors.New("natspub: New: a JetStream context is required")
	}
	if stream == "" {
		return nil, errors.New("natspub: New: a stream name is required")
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
		source := "WithMaxRedeliveryDelay"
		if !c.maxRedeliverySet {
			source = "WithMaxRedeliveryDelay's default"
		}
		werr := fmt.Errorf("%w: stream %q deduplicates for %v, shorter than the relay's longest redelivery delay %v (%s): a message published again after the window would be stored twice (raise the stream's Duplicates, or accept the risk with WithShortDuplicateWindow)",
			ErrDuplicateWindowTooShort, stream, window, c.maxRedelivery, source)
		if !c.allowShort {
			return nil, werr
		}
		c.logger.ErrorContext(ctx, "natspub: duplicates possible", slog.String("error", werr.Error()))
	}
	return &Publisher{js: js, stream: stream, subjects: info.Config.Subjects}, nil
}

// Publish publishes d to the subject d.Topic with d.ID as Nats-Msg-Id and
// d.Headers as headers, and returns nil once the stream stored it (or
// recognised it as a duplicate within its window). A message that is its own
// fault is a permanent error, dead-lettered by the relay at once: a topic
// that is not one of the stream's subjects or is bound to another stream, a
// header NATS cannot carry, a message larger than the server's max_payload or
// the stream's MaxMsgSize, headers over the server's limit. Anything else (no
// stream leader, timeouts, a lost connection) is retried by the relay. d.Key
// is not sent: the relay already hands over the messages of a key one at a
// time, so they are stored in order.
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
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrBadHeaderMsg):
		return retry.Permanent(err)
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode {
		case jsErrCodeStreamNotMatch, jetstream.JSErrCodeStreamMessageExceedsMaximum, jsErrCodeHeaderExceedsMaximum:
			return retry.Permanent(err)
		}
	}
	return err
}

// JetStream API errors that are the message's own fault.
const (
	// jsErrCodeStreamNotMatch: "expected stream does not match": the subject
	// is bound to another stream.
	jsErrCodeStreamNotMatch jetstream.ErrorCode = 10060
	// jsErrCodeHeaderExceedsMaximum: "header size exceeds maximum allowed".
	jsErrCodeHeaderExceedsMaximum jetstream.ErrorCode = 10097
)

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
