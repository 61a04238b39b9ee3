package rabbitpub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/steadfast-go/steadfast/outbox"
)

// Defaults of the options.
const (
	DefaultDialTimeout = 30 * time.Second
	DefaultHeartbeat   = 10 * time.Second
)

var (
	// ErrClosed is returned by Publish after Close.
	ErrClosed = errors.New("rabbitpub: publisher closed")
	// ErrNacked is matched by the error of Publish when the broker refused
	// the message (basic.nack) or the channel closed before confirming it.
	ErrNacked = errors.New("rabbitpub: message not confirmed")
	// ErrReturned is matched by the error of Publish for a message the
	// broker returned as unroutable; see ReturnedError.
	ErrReturned = errors.New("rabbitpub: message returned")
	// ErrUnknownExchange is matched by the error of New when the exchange
	// does not exist.
	ErrUnknownExchange = errors.New("rabbitpub: unknown exchange")
)

// ReturnedError is the error of Publish for a message the broker returned
// because no queue is bound to receive it (the mandatory flag). It matches
// ErrReturned. The relay retries the message: bind a queue, and it goes
// through.
type ReturnedError struct {
	// MessageID is the outbox message id.
	MessageID string
	// Exchange and RoutingKey are where the message was published.
	Exchange   string
	RoutingKey string
	// ReplyCode and ReplyText are the broker's reason, such as 312
	// NO_ROUTE.
	ReplyCode uint16
	ReplyText string
}

// Error names the message, the exchange and routing key, and the broker's
// reason.
func (e *ReturnedError) Error() string {
	return fmt.Sprintf("rabbitpub: message %s returned by exchange %q for routing key %q: %d %s",
		e.MessageID, e.Exchange, e.RoutingKey, e.ReplyCode, e.ReplyText)
}

// Is reports whether target is ErrReturned.
func (e *ReturnedError) Is(target error) bool { return target == ErrReturned }

// Option configures a Publisher.
type Option func(*config) error

type config struct {
	dialTimeout time.Duration
	heartbeat   time.Duration
	name        string
	logger      *slog.Logger
}

// WithDialTimeout bounds dialing and the AMQP handshake (the caller's context
// bounds it too). It must be positive. Defaults to DefaultDialTimeout (30 s).
func WithDialTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("rabbitpub: WithDialTimeout(%v): must be positive", d)
		}
		c.dialTimeout = d
		return nil
	}
}

// WithHeartbeat sets the AMQP heartbeat interval, which bounds how long a
// silently dead connection goes unnoticed. It must be positive. Defaults to
// DefaultHeartbeat (10 s).
func WithHeartbeat(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("rabbitpub: WithHeartbeat(%v): must be positive", d)
		}
		c.heartbeat = d
		return nil
	}
}

// WithConnectionName sets the connection name shown in the RabbitMQ
// management UI. Defaults to "steadfast-outbox".
func WithConnectionName(name string) Option {
	return func(c *config) error {
		c.name = name
		return nil
	}
}

// WithLogger sets the logger: reconnections are logged at info level,
// nothing per message. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("rabbitpub: WithLogger(nil): a logger is required")
		}
		c.logger = l
		return nil
	}
}

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
}

var _ outbox.Publisher = (*Publisher)(nil)

// New dials url and returns a Publisher to exchange ("" is the default
// exchange, which routes by queue name). It refuses an empty url, a broker it
// cannot reach, and an exchange that does not exist (an error matching
// ErrUnknownExchange), and returns an error naming an invalid option.
func New(ctx context.Context, url, exchange string, opts ...Option) (*Publisher, error) {
	c := config{dialTimeout: DefaultDialTimeout, heartbeat: DefaultHeartbeat, name: "steadfast-outbox"}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if url == "" {
		return nil, errors.New("rabbitpub: a broker URL is required")
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

	// testHookRead, when set, is called before each round of the reader's
	// loop (tests only).
	testHookRead func()

	mu       sync.Mutex
	waiting  map[string]int         // message id → publishes in flight
	returned map[string]amqp.Return // returns of messages in flight
}

func (p *Publisher) dial(ctx context.Context) (*session, error) {
	timeout := p.cfg.dialTimeout
	conn, err := amqp.DialConfig(p.url, amqp.Config{
		Heartbeat:  p.cfg.heartbeat,
		Properties: amqp.Table{"connection_name": p.cfg.name},
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var d net.Dialer
			c, err := d.DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bounds the handshake; amqp clears it once the connection is open.
			deadline, _ := dctx.Deadline()
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		},
	})
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

func (s *session) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return !s.conn.IsClosed()
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
// is a *ReturnedError, a nack or a channel that closed before confirming
// matches ErrNacked; all of them, like dial errors and timeouts, are
// retried by the relay. After Close it returns ErrClosed.
func (p *Publisher) Publish(ctx context.Context, d outbox.Delivery) error {
	s, err := p.current(ctx)
	if err != nil {
		return err
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
		return fmt.Errorf("%w: %s (nacked, or the channel closed first)", ErrNacked, d.ID)
	}
	if r, returned := s.returnOf(d.ID); returned {
		return &ReturnedError{MessageID: d.ID, Exchange: r.Exchange, RoutingKey: r.RoutingKey, ReplyCode: r.ReplyCode, ReplyText: r.ReplyText}
	}
	return nil
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
