package rabbitpub_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/internal/testserver"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/rabbitpub"
	"github.com/steadfast-go/steadfast/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker is a connection for the test's own setup, and names unique to it.
type broker struct {
	url      string
	ch       *amqp.Channel
	exchange string
}

func newBroker(t testing.TB) *broker {
	t.Helper()
	u := testenv.AMQPURL(t)
	conn, err := amqp.Dial(u)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{url: u, ch: ch, exchange: "test-" + uuid.NewString()}
	if err := ch.ExchangeDeclare(b.exchange, "direct", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(b.exchange, false, false) })
	return b
}

// bind declares a queue of the test's own bound to the exchange with key.
func (b *broker) bind(t testing.TB, key string) string {
	t.Helper()
	q, err := b.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ch.QueueBind(q.Name, key, b.exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	return q.Name
}

func (b *broker) get(t testing.TB, queue string) (amqp.Delivery, bool) {
	t.Helper()
	d, ok, err := b.ch.Get(queue, false)
	if err != nil {
		t.Fatal(err)
	}
	return d, ok
}

func newPublisher(t testing.TB, url, exchange string, opts ...rabbitpub.Option) *rabbitpub.Publisher {
	t.Helper()
	p, err := rabbitpub.New(context.Background(), url, exchange, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func delivery(topic string) outbox.Delivery {
	id, _ := uuid.NewV7()
	return outbox.Delivery{Message: outbox.Message{ID: id.String(), Topic: topic, Payload: []byte(`{"n":1}`),
		Headers: map[string]string{"outbox-position": "9", "Content-Type": "application/json"}},
		Attempt: 1, CreatedAt: time.Unix(1_700_000_000, 0)}
}

func TestPublishIsConfirmedAndRouted(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := b.bind(t, "orders")
	p := newPublisher(t, b.url, b.exchange)
	d := delivery("orders")
	if err := p.Publish(context.Background(), d); err != nil {
		t.Fatalf("Publish = %v", err)
	}
	got, ok := b.get(t, q)
	if !ok {
		t.Fatal("queue is empty after a confirmed publish")
	}
	if got.MessageId != d.ID || string(got.Body) != string(d.Payload) || got.DeliveryMode != amqp.Persistent ||
		got.ContentType != "application/json" || got.Headers["outbox-position"] != "9" {
		t.Errorf("delivery = id %q body %q mode %d type %q headers %v", got.MessageId, got.Body, got.DeliveryMode, got.ContentType, got.Headers)
	}
}

func TestUnroutableMessageIsAnError(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	p := newPublisher(t, b.url, b.exchange)
	d := delivery("nobody-listens")
	err := p.Publish(context.Background(), d)
	if !errors.Is(err, rabbitpub.ErrReturned) {
		t.Fatalf("Publish to an exchange with no queue = %v, want ErrReturned", err)
	}
	// The error names the message, the routing key and the broker's reason.
	for _, want := range []string{d.ID, `"nobody-listens"`, strconv.Itoa(amqp.NoRoute)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if retry.IsPermanent(err) {
		t.Errorf("a returned message must be retried, not dead-lettered at once: %v", err)
	}
	// Once a queue is bound, the relay's next attempt goes through.
	q := b.bind(t, "nobody-listens")
	if err := p.Publish(context.Background(), d); err != nil {
		t.Fatalf("Publish after binding = %v", err)
	}
	if _, ok := b.get(t, q); !ok {
		t.Fatal("queue is empty")
	}
}

// TestConcurrentReturnsAreAttributed publishes routable and unroutable
// messages at once on one channel: each publish must get its own outcome.
func TestConcurrentReturnsAreAttributed(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := b.bind(t, "routed")
	p := newPublisher(t, b.url, b.exchange)
	const n = 60
	var wg sync.WaitGroup
	var wrong atomic.Int32
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "routed"
			if i%3 == 0 {
				topic = "lost"
			}
			err := p.Publish(context.Background(), delivery(topic))
			if (topic == "lost") != errors.Is(err, rabbitpub.ErrReturned) || (topic == "routed" && err != nil) {
				wrong.Add(1)
				t.Errorf("publish %d to %s: %v", i, topic, err)
			}
		}()
	}
	wg.Wait()
	ch := b.ch
	info, err := ch.QueueDeclarePassive(q, false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Messages != n-n/3 {
		t.Errorf("queue holds %d messages, want %d", info.Messages, n-n/3)
	}
}

func TestNewRefusesMisconfiguration(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	tests := []struct {
		name     string
		url      string
		exchange string
		opts     []rabbitpub.Option
		is       error
		text     string
	}{
		{"no URL", "", b.exchange, nil, nil, "URL"},
		{"unknown exchange", b.url, "no-such-exchange-" + uuid.NewString(), nil, rabbitpub.ErrUnknownExchange, ""},
		{"unreachable broker", "amqp://guest:guest@127.0.0.1:1/", b.exchange, nil, nil, "dial"},
		{"bad heartbeat", b.url, b.exchange, []rabbitpub.Option{rabbitpub.WithConfig(amqp.Config{Heartbeat: -1})}, nil, "WithConfig"},
		{"nil logger", b.url, b.exchange, []rabbitpub.Option{rabbitpub.WithLogger(nil)}, nil, "WithLogger"},
		{"nil option", b.url, b.exchange, []rabbitpub.Option{nil}, nil, "rabbitpub: New: option 0 is nil"},
		{"exchange name over 255 bytes", b.url, strings.Repeat("x", 256), nil, nil, "255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := rabbitpub.New(context.Background(), tt.url, tt.exchange, tt.opts...)
			if err == nil {
				_ = p.Close()
				t.Fatal("New = nil error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("New = %v, want %v", err, tt.is)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("New = %v, want an error naming %q", err, tt.text)
			}
		})
	}
	// The default exchange needs no check.
	p := newPublisher(t, b.url, "")
	_ = p
}

func TestPublishResumesAfterTheConnectionDrops(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := b.bind(t, "orders")
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testserver.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	p := newPublisher(t, u.String(), b.exchange)
	ctx := context.Background()
	if err := p.Publish(ctx, delivery("orders")); err != nil {
		t.Fatalf("publish before the drop: %v", err)
	}

	proxy.Cut()
	// While the broker is unreachable every publish fails (the first may be
	// the one that finds the connection gone); none is reported delivered.
	for i := 0; i < 3; i++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.Publish(pctx, delivery("orders"))
		cancel()
		if err == nil {
			t.Fatalf("publish %d while cut = nil, want an error", i)
		}
	}

	proxy.Restore()
	// The relay's next attempts: one reconnects and goes through.
	var last error
	delivered := false
	for i := 0; i < 3 && !delivered; i++ {
		if last = p.Publish(ctx, delivery("orders")); last == nil {
			delivered = true
		}
	}
	if !delivered {
		t.Fatalf("publishing did not resume after the connection came back: %v", last)
	}
	// Both confirmed messages are in the queue, none of the failed ones.
	info, err := b.ch.QueueDeclarePassive(q, false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Messages != 2 {
		t.Errorf("queue holds %d messages, want 2", info.Messages)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	p, err := rabbitpub.New(context.Background(), b.url, b.exchange)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := p.Publish(context.Background(), delivery("x")); !errors.Is(err, rabbitpub.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
}

var _ outbox.Inbox = (*sqlstore.Store)(nil)

func TestConsumeRunsOncePerMessage(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := b.bind(t, "orders")
	p := newPublisher(t, b.url, b.exchange)
	inbox := pubtest.NewInbox(t)
	ctx := context.Background()
	d := delivery("orders")
	if err := p.Publish(ctx, d); err != nil {
		t.Fatal(err)
	}
	next := func() amqp.Delivery {
		t.Helper()
		for i := 0; i < 100; i++ {
			if m, ok := b.get(t, q); ok {
				return m
			}
			time.Sleep(10 * time.Millisecond) // a requeued message comes back asynchronously
		}
		t.Fatal("no message")
		return amqp.Delivery{}
	}
	var runs atomic.Int32
	handler := func(fail bool) func(context.Context, *sql.Tx) error {
		return func(context.Context, *sql.Tx) error {
			runs.Add(1)
			if fail {
				return errors.New("handler failed")
			}
			return nil
		}
	}
	if _, err := rabbitpub.Consume(ctx, inbox, "billing", next(), handler(true)); err == nil {
		t.Fatal("Consume with a failing handler = nil")
	}
	m := next()
	if !m.Redelivered {
		t.Error("the failed message was not redelivered")
	}
	if pos, ok := rabbitpub.Position(m); !ok || pos != 9 {
		t.Errorf("Position = %d, %v; want 9", pos, ok)
	}
	if dup, err := rabbitpub.Consume(ctx, inbox, "billing", m, handler(false)); err != nil || dup {
		t.Fatalf("Consume = %v, %v; want first processing", dup, err)
	}
	// The relay published the message again (its write-back was lost): the
	// copy is acknowledged without running the handler.
	if err := p.Publish(ctx, d); err != nil {
		t.Fatal(err)
	}
	if dup, err := rabbitpub.Consume(ctx, inbox, "billing", next(), handler(false)); err != nil || !dup {
		t.Fatalf("Consume of the copy = %v, %v; want duplicate", dup, err)
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("handler ran %d times, want 2 (a failure, a success)", n)
	}
	if _, ok := b.get(t, q); ok {
		t.Error("queue not empty: a message was not acknowledged")
	}
	// A delivery without a message id is rejected, not processed.
	if err := b.ch.Publish(b.exchange, "orders", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := rabbitpub.Consume(ctx, inbox, "billing", next(), handler(false)); !errors.Is(err, rabbitpub.ErrNoMessageID) {
		t.Fatalf("Consume without message id = %v, want ErrNoMessageID", err)
	}
}

func TestConsumeRefusesNil(t *testing.T) {
	t.Parallel()
	fn := func(context.Context, *sql.Tx) error { return nil }
	if _, err := rabbitpub.Consume(context.Background(), nil, "billing", amqp.Delivery{MessageId: "m"}, fn); err == nil {
		t.Error("Consume with a nil inbox = nil error")
	}
	if _, err := rabbitpub.Consume(context.Background(), pubtest.NewInbox(t), "billing", amqp.Delivery{MessageId: "m"}, nil); err == nil {
		t.Error("Consume with a nil fn = nil error")
	}
}

// TestWithConfigIsUsed: the caller's amqp091-go configuration is used, its
// zero fields take the publisher's defaults, and its maps are not changed.
func TestWithConfigIsUsed(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	var dials atomic.Int32
	props := amqp.Table{"product": "billing"}
	p := newPublisher(t, b.url, b.exchange, rabbitpub.WithConfig(amqp.Config{
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			dials.Add(1)
			return amqp.DefaultDial(5*time.Second)(network, addr)
		},
	}))
	if dials.Load() != 1 {
		t.Errorf("the caller's Dial ran %d times, want 1", dials.Load())
	}
	if len(props) != 1 {
		t.Errorf("the caller's properties were changed: %v", props)
	}
	b.bind(t, "orders")
	if err := p.Publish(context.Background(), delivery("orders")); err != nil {
		t.Fatal(err)
	}
}
