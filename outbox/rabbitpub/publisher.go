package rabbitpub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
)

const (
	defaultDialTimeout = 30 * time.Second
	defaultHeartbeat   = 10 * time.Second
	// shortstrMax is AMQP's limit on a short string: a routing key, a
	// message id, a content type, a header name.
	shortstrMax = 255
)

var (
	// ErrClosed is returned by Publish after Close.
	ErrClosed = errors.New("rabbitpub: publisher closed")
	// ErrNacked is matched by the error of Publish when the broker refused
	// the message (basic.nack) or the channel closed before confirming it.
	ErrNacked = errors.New("rabbitpub: message not confirmed")
	// ErrReturned is matched by the error of Publish for a message the
	// broker returned because no queue is bound to receive it (the mandatory
	// flag). The error names the message, the exchange, the routing key and
	// the broker's reason (312 NO_ROUTE). The relay retries the message: bind
	// a queue, and it goes through.
	ErrReturned = errors.New("rabbitpub: message returned")
	// ErrUnknownExchange is matched by the error of New when the exchange
	// does not exist.
	ErrUnknownExchange = errors.New("rabbitpub: unknown exchange")
)

// Publisher publishes outbox messages to one RabbitMQ exchange. It implements
// outbox.Publisher, is safe for concurrent use, and must be closed with
// Close.
type Publisher struct {
	url      string
	exchange string
	cfg      config

	sem    chan struct{} // held while reading or replacing sess, and by Close
	sess   *session
	closed bool
	wg     sync.WaitGroup
	// maxBody is the broker's max_message_size once a refusal told it (0:
	// not known).
	maxBody atomic.Int64
}

var _ outbox.Publisher = (*Publisher)(nil)

// New dials url and returns a Publisher to exchange ("" is the default
// exchange, which routes by queue name). It refuses an empty url, a broker it
// cannot reach, and an exchange that does not exist (an error matching
// ErrUnknownExchange), and returns an error naming an invalid or nil option.
func New(ctx context.Context, url, exchange string, opts ...Option) (*Publisher, error) {
	var c config
	if err := applyOptions("New", &c, opts); err != nil {
		return nil, err
	}
	if c.amqp.Heartbeat == 0 {
		c.amqp.Heartbeat = defaultHeartbeat
	}
	props := make(amqp.Table, len(c.amqp.Properties)+1)
	for k, v := range c.amqp.Properties {
		props[k] = v
	}
	if _, ok := props["connection_name"]; !ok {
		props["connection_name"] = "steadfast-outbox"
	}
	c.amqp.Properties = props
	if url == "" {
		return nil, errors.New("rabbitpub: New: a broker URL is required")
	}
	if len(exchange) > shortstrMax {
		return nil, fmt.Errorf("rabbitpub: New: exchange name of %d bytes: AMQP allows %d", len(exchange), shortstrMax)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	p := &Publisher{url: url, exchange: exchange, cfg: c, sem: make(chan struct{}, 1)}
	s, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	if exchange != "" {
		ch, err := s.conn.Channel()
		if err != nil {
			s.shutdown()
			p.wg.Wait()
			return nil, fmt.Errorf("rabbitpub: open channel: %w", err)
		}
		// A passive declare only checks that the exchange exists; a missing
		// one closes this channel with 404.
		if err := ch.ExchangeDeclarePassive(exchange, "direct", false, false, false, false, nil); err != nil {
			s.shutdown()
			p.wg.Wait()
			var aerr *amqp.Error
			if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
				return nil, fmt.Errorf("%w: %q: %v", ErrUnknownExchange, exchange, err)
			}
			return nil, fmt.Errorf("rabbitpub: check exchange %q: %w", exchange, err)
		}
		_ = ch.Close()
	}
	p.sess = s
	return p, nil
}

// session is one connection with its confirming channel and the reader of
// its returned messages.
type session struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	flush   chan chan struct{}
	done    chan struct{} // closed when the reader stopped: the channel is gone
	// closes receives the reason the broker closed the channel for; the
	// first one read is kept in closeReason (under mu).
	closes      chan *amqp.Error
	closeReason *amqp.Error

	// testHookRead, when set, is called before each round of the reader's
	// loop (tests only).
	testHookRead func()

	mu       sync.Mutex
	waiting  map[string]int         // message id → publishes in flight
	returned map[string]amqp.Return // returns of messages in flight
}

func (p *Publisher) dial(ctx context.Context) (*session, error) {
	cfg := p.cfg.amqp
	if cfg.Dial == nil {
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, defaultDialTimeout)
			defer cancel()
			var d net.Dialer
			c, err := d.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshakes; amqp clears it once the connection is
			// open.
			deadline, _ := dctx.Deadline()
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	conn, err := amqp.DialConfig(p.url, cfg)
	if err != nil {
		return nil, fmt.Errorf("rabbitpub: dial: %w", err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("rabbitpub: open confirming channel: %w", err)
	}
	s := newSession(conn, ch)
	ch.NotifyReturn(s.returns)
	ch.NotifyClose(s.closes)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		s.read()
	}()
	return s, nil
}

func newSession(conn *amqp.Connection, ch *amqp.Channel) *session {
	return &session{
		conn: conn,
		ch:   ch,
		// Unbuffered: amqp091-go hands a basic.return over (on the
		// goroutine that then reads the basic.ack after it) only once the
		// reader took it, so a return is never left waiting in a buffer
		// while the reader answers the confirmed publish's flush.
		returns:  make(chan amqp.Return),
		flush:    make(chan chan struct{}),
		done:     make(chan struct{}),
		closes:   make(chan *amqp.Error, 1),
		waiting:  map[string]int{},
		returned: map[string]amqp.Return{},
	}
}

// track registers a publish of id in flight, so that the reader records its
// return; the returned func ends it.
func (s *session) track(id string) (untrack func()) {
	s.mu.Lock()
	s.waiting[id]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.waiting[id]--; s.waiting[id] == 0 {
			delete(s.waiting, id)
			delete(s.returned, id)
		}
		s.mu.Unlock()
	}
}

// returnOf is called once the broker confirmed a publish of id: it reports
// the broker's return of id, if it sent one.
func (s *session) returnOf(id string) (amqp.Return, bool) {
	// The broker sends basic.return before basic.ack, and the client hands
	// the return to the reader before it reads the ack: once the reader has
	// answered a flush, any return of this message is recorded.
	flushed := make(chan struct{})
	select {
	case s.flush <- flushed:
		<-flushed
	case <-s.done:
	}
	s.mu.Lock()
	r, ok := s.returned[id]
	s.mu.Unlock()
	return r, ok
}

// read records the returns of messages in flight, and answers flush requests
// in order with them, until the channel closes (amqp closes returns then).
// Before it answers a flush it takes every return already handed over, so
// a return always comes before the confirmation that followed it.
func (s *session) read() {
	defer close(s.done)
	for {
		if s.testHookRead != nil {
			s.testHookRead()
		}
		select {
		case r, ok := <-s.returns:
			if !ok {
				return
			}
			s.record(r)
		case ack := <-s.flush:
			for drained := false; !drained; {
				select {
				case r, ok := <-s.returns:
					if !ok {
						close(ack)
						return
					}
					s.record(r)
				default:
					drained = true
				}
			}
			close(ack)
		}
	}
}

func (s *session) record(r amqp.Return) {
	s.mu.Lock()
	if s.waiting[r.MessageId] > 0 {
		s.returned[r.MessageId] = r
	}
	s.mu.Unlock()
}

// closedBy returns the error the broker closed the channel with, or nil
// (not closed, or closed by the client). amqp091-go sends it before it fails
// the confirmations in flight, so a publish that was not confirmed finds it.
func (s *session) closedBy() *amqp.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeReason == nil {
		select {
		case e := <-s.closes:
			s.closeReason = e
		default:
		}
	}
	return s.closeReason
}

func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		// The channel may be closed (by the broker, for one message) before
		// the reader saw its returns closed.
		return !s.conn.IsClosed() && !s.ch.IsClosed()
	}
}

func (s *session) shutdown() {
	_ = s.conn.Close()
}

// current returns a live session, dialing a new one when the last one died.
func (p *Publisher) current(ctx context.Context) (*session, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-p.sem }()
	if p.closed {
		return nil, ErrClosed
	}
	if p.sess != nil && p.sess.alive() {
		return p.sess, nil
	}
	if p.sess != nil {
		p.sess.shutdown()
		p.sess = nil
	}
	s, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	p.cfg.logger.InfoContext(ctx, "rabbitpub: connected again", slog.String("exchange", p.exchange))
	p.sess = s
	return s, nil
}

// Publish publishes d to the exchange with d.Topic as routing key and
// returns nil once the broker confirmed it. A returned (unroutable) message
// matches ErrReturned, a nack or a channel that closed before confirming
// matches ErrNacked; all of them, like dial errors and timeouts, are retried
// by the relay. A message that is its own fault is a permanent error (the
// relay dead-letters it at once): one that AMQP cannot frame (a routing key,
// message id, content type or header name over 255 bytes, headers larger than
// a frame), found before anything is sent, so it does not tear down the
// connection that other publishes share; and one larger than the broker's
// max_message_size, which the broker refuses by closing the channel (from
// then on, larger messages are refused before they are sent). After Close it
// returns ErrClosed.
func (p *Publisher) Publish(ctx context.Context, d outbox.Delivery) error {
	if err := p.check(d); err != nil {
		return retry.Permanent(fmt.Errorf("rabbitpub: message %.64q cannot be published: %w", d.ID, err))
	}
	s, err := p.current(ctx)
	if err != nil {
		return err
	}
	if err := frameFits(s, d); err != nil {
		return retry.Permanent(fmt.Errorf("rabbitpub: message %s cannot be published: %w", d.ID, err))
	}
	defer s.track(d.ID)()

	msg := amqp.Publishing{
		MessageId:    d.ID,
		DeliveryMode: amqp.Persistent,
		Timestamp:    d.CreatedAt,
		Body:         d.Payload,
	}
	if len(d.Headers) > 0 {
		msg.Headers = make(amqp.Table, len(d.Headers))
		for k, v := range d.Headers {
			if k == "Content-Type" || k == "content-type" {
				msg.ContentType = v
				continue
			}
			msg.Headers[k] = v
		}
	}
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, d.Topic, true, false, msg)
	if err != nil {
		return fmt.Errorf("rabbitpub: publish %s: %w", d.ID, err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("rabbitpub: publish %s: waiting for the confirmation: %w", d.ID, err)
	}
	if !acked {
		err := fmt.Errorf("%w: %s (nacked, or the channel closed first)", ErrNacked, d.ID)
		if reason := s.closedBy(); reason != nil {
			err = fmt.Errorf("%w: %w", err, reason)
			if max, ok := maxMessageSize(reason); ok {
				p.maxBody.Store(max)
				if int64(len(d.Payload)) > max {
					return retry.Permanent(err)
				}
			}
		}
		return err
	}
	if r, returned := s.returnOf(d.ID); returned {
		return fmt.Errorf("%w: message %s by exchange %q for routing key %q: %d %s",
			ErrReturned, d.ID, r.Exchange, r.RoutingKey, r.ReplyCode, r.ReplyText)
	}
	return nil
}

// check finds what makes d impossible to publish whatever the connection:
// AMQP's short strings over 255 bytes, and a body over the broker's maximum
// once the broker told it.
func (p *Publisher) check(d outbox.Delivery) error {
	if len(d.Topic) > shortstrMax {
		return fmt.Errorf("routing key (topic) of %d bytes: AMQP allows %d", len(d.Topic), shortstrMax)
	}
	if len(d.ID) > shortstrMax {
		return fmt.Errorf("message id of %d bytes: AMQP allows %d", len(d.ID), shortstrMax)
	}
	for k, v := range d.Headers {
		if len(k) > shortstrMax {
			return fmt.Errorf("header name %.32q... of %d bytes: AMQP allows %d", k, len(k), shortstrMax)
		}
		if (k == "Content-Type" || k == "content-type") && len(v) > shortstrMax {
			return fmt.Errorf("content type of %d bytes: AMQP allows %d", len(v), shortstrMax)
		}
	}
	if max := p.maxBody.Load(); max > 0 && int64(len(d.Payload)) > max {
		return fmt.Errorf("body of %d bytes: the broker's max_message_size is %d", len(d.Payload), max)
	}
	return nil
}

// frameFits checks that d's properties fit in one frame of the session's
// connection: AMQP does not split a content header, and a frame over the
// negotiated size makes the broker close the connection.
func frameFits(s *session, d outbox.Delivery) error {
	max := s.conn.Config.FrameSize
	if max <= 0 {
		return nil
	}
	// class, weight, body size, flags; delivery mode, timestamp, message id.
	size := 2 + 2 + 8 + 2 + 1 + 8 + 1 + len(d.ID) + 4
	for k, v := range d.Headers {
		// a table entry: name (short string), type, value (long string).
		size += 1 + len(k) + 1 + 4 + len(v)
	}
	const frameOverhead = 8
	if size+frameOverhead > max {
		return fmt.Errorf("headers of about %d bytes do not fit in one AMQP frame of %d bytes", size, max)
	}
	return nil
}

// maxMessageSize reads the broker's maximum from the reason RabbitMQ closes a
// channel for when a message is larger than its max_message_size:
// "PRECONDITION_FAILED - message size 135266304 is larger than configured max
// size 134217728". AMQP has no code of its own for it (406 is any failed
// precondition), so the text is the only place that says it.
func maxMessageSize(e *amqp.Error) (int64, bool) {
	if e.Code != amqp.PreconditionFailed {
		return 0, false
	}
	_, rest, ok := strings.Cut(e.Reason, "message size ")
	if !ok {
		return 0, false
	}
	var size, max int64
	if n, _ := fmt.Sscanf(rest, "%d is larger than configured max size %d", &size, &max); n != 2 || max <= 0 {
		return 0, false
	}
	return max, true
}

// Close closes the connection and waits for the reader of returns to stop.
// Publishes in flight fail. It is safe to call more than once.
func (p *Publisher) Close() error {
	p.sem <- struct{}{}
	var err error
	if !p.closed {
		p.closed = true
		if p.sess != nil {
			err = p.sess.conn.Close()
			if errors.Is(err, amqp.ErrClosed) {
				err = nil
			}
			p.sess = nil
		}
	}
	<-p.sem
	p.wg.Wait()
	return err
}
