// Command outbox-nats writes orders and their "order created" events in one
// PostgreSQL transaction (a transactional outbox), relays the events to NATS
// JetStream, and consumes them exactly once.
//
//   - Each order and its outbox message commit together (outbox/sqloutbox's
//     Enqueue in the caller's transaction): an order that rolls back
//     publishes nothing, and a committed one is never lost, whatever crashes.
//   - An outbox.Relay, woken by LISTEN/NOTIFY, publishes each message to
//     JetStream with outbox/natspub, which sets Nats-Msg-Id to the message id,
//     so the stream stores a message published twice (a relay that died
//     after publishing) once.
//   - Messages with the same partition key (here, the customer) are delivered
//     in commit order.
//   - A consumer applies each message once, through natspub.Consume and the
//     inbox of idempotency/sqlstore, whatever JetStream redelivers.
//
// Run it against the loopback PostgreSQL and NATS (with JetStream enabled);
// it creates its tables, stream and consumer if missing:
//
//	go run ./examples/outbox-nats \
//	    -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	    -nats nats://127.0.0.1:4222
//
// The flags default to $TEST_POSTGRES_URL and $TEST_NATS_URL, else to the
// addresses above.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/natspub"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.postgres, "postgres", envOr("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flag.StringVar(&cfg.nats, "nats", envOr("TEST_NATS_URL", nats.DefaultURL), "NATS URL")
	flag.StringVar(&cfg.prefix, "prefix", "shop", "prefix of the tables it creates")
	flag.StringVar(&cfg.stream, "stream", "ORDERS", "JetStream stream")
	flag.StringVar(&cfg.subject, "subject", "orders", "subject prefix of the stream (it binds <subject>.>)")
	flag.IntVar(&cfg.orders, "orders", 30, "orders to place")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "outbox-nats:", err)
		os.Exit(1)
	}
}

type config struct {
	postgres, nats  string
	prefix          string
	stream, subject string
	orders          int
}

// summary is what run observed, for its test.
type summary struct {
	Placed      int // orders committed
	Shipped     int // orders the consumer applied (once each)
	Duplicates  int // deliveries the consumer's inbox skipped
	StreamMsgs  int // messages of this run stored in the stream
	OrderBroken int // per-customer order violations seen by the consumer
	Pending     int64
	Dead        int64
}

// orderCreated is the payload of the outbox message.
type orderCreated struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Seq      int    `json:"seq"` // per customer, in placing order
}

func run(ctx context.Context, cfg config, out io.Writer) (summary, error) {
	db, err := sql.Open("pgx", cfg.postgres)
	if err != nil {
		return summary{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(10)

	nc, err := nats.Connect(cfg.nats)
	if err != nil {
		return summary{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return summary{}, err
	}

	// The outbox table, the consumer's inbox, and the application's tables.
	ob, err := sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(cfg.prefix+"_outbox"))
	if err != nil {
		return summary{}, err
	}
	inbox, err := sqlstore.New(db, steadfast.Postgres, sqlstore.WithTable(cfg.prefix+"_shipping"))
	if err != nil {
		return summary{}, err
	}
	for _, migrate := range []func(context.Context) error{ob.Migrate, inbox.Migrate} {
		if err := migrate(ctx); err != nil {
			return summary{}, err
		}
	}
	orders, shipments := cfg.prefix+"_orders", cfg.prefix+"_shipments"
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS " + orders + " (id text PRIMARY KEY, customer text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
		"CREATE TABLE IF NOT EXISTS " + shipments + " (n bigserial PRIMARY KEY, order_id text NOT NULL, customer text NOT NULL, seq int NOT NULL)",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return summary{}, err
		}
	}

	// The stream deduplicates on Nats-Msg-Id for 5 minutes: longer than the
	// relay's longest redelivery delay (its lease, 1 min, and its maximum
	// backoff, 30 s), which natspub.New checks.
	topic := cfg.subject + ".created"
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: cfg.stream, Subjects: []string{cfg.subject + ".>"}, Duplicates: 5 * time.Minute,
	}); err != nil {
		return summary{}, err
	}
	pub, err := natspub.New(ctx, js, cfg.stream)
	if err != nil {
		return summary{}, err
	}
	listener, err := pgxoutbox.NewListener(ob, db)
	if err != nil {
		return summary{}, err
	}
	relay, err := outbox.NewRelay(ob, pub,
		outbox.WithNotifier(listener), // woken at each commit; polls every second as a fallback
		outbox.WithBackoff(200*time.Millisecond, 30*time.Second),
	)
	if err != nil {
		return summary{}, err
	}
	if err := relay.Start(ctx); err != nil {
		return summary{}, err
	}
	stopRelay := func() error {
		// Stop releases what the relay claimed and writes back every outcome.
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return relay.Stop(stop)
	}
	defer stopRelay() // on early returns; a second Stop waits for the first

	// Place the orders: each order row and its message in one transaction.
	runID := newRunID()
	customers := []string{"alice", "bob", "carol"}
	var s summary
	var first outbox.Message
	for i := range cfg.orders {
		cust := customers[i%len(customers)]
		msg, err := placeOrder(ctx, db, ob, orders, topic, orderCreated{
			Order: fmt.Sprintf("ord_%s_%03d", runID, i), Customer: runID + "_" + cust, Seq: i / len(customers),
		})
		if err != nil {
			return summary{}, fmt.Errorf("order %d: %w", i, err)
		}
		if i == 0 {
			first = msg
		}
		s.Placed++
	}
	fmt.Fprintf(out, "placed %d orders, each with its outbox message in the same transaction\n", s.Placed)

	// An order whose transaction rolls back publishes nothing.
	if err := placeFailingOrder(ctx, db, ob, orders, topic, runID); err != nil {
		return summary{}, err
	}
	fmt.Fprintln(out, "1 order rolled back (card declined): its message is gone with it")

	// Consume until every committed order is shipped.
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.stream, jetstream.ConsumerConfig{
		Durable: cfg.prefix + "_shipping", FilterSubject: topic, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return summary{}, err
	}
	if err := consume(ctx, cons, inbox, db, shipments, runID, s.Placed, &s); err != nil {
		return summary{}, err
	}
	fmt.Fprintf(out, "relay published, consumer shipped %d orders (%d redelivery after a consumer crash skipped by its inbox)\n", s.Shipped, s.Duplicates)

	// A relay that died after publishing and before recording it publishes
	// the message again: the stream keeps one copy.
	if err := pub.Publish(ctx, outbox.Delivery{Message: first, Attempt: 2}); err != nil {
		return summary{}, err
	}
	if s.StreamMsgs, err = countRunMessages(ctx, js, cfg.stream, topic, runID); err != nil {
		return summary{}, err
	}
	fmt.Fprintf(out, "republished %s: the stream holds %d messages of this run for %d orders\n", first.ID, s.StreamMsgs, s.Placed)

	if err := checkOrder(ctx, db, shipments, runID, &s); err != nil {
		return summary{}, err
	}
	fmt.Fprintf(out, "per-customer order violations: %d\n", s.OrderBroken)
	if err := stopRelay(); err != nil {
		return summary{}, err
	}
	stats, err := ob.Stats(ctx)
	if err != nil {
		return summary{}, err
	}
	s.Pending, s.Dead = stats.Pending, stats.Dead
	fmt.Fprintf(out, "relay stopped; outbox: %d pending, %d dead\n", stats.Pending, stats.Dead)
	return s, nil
}

// placeOrder writes an order and its "order created" message in one
// transaction, keyed by the customer so that a customer's events keep their
// order. It returns the message as enqueued.
func placeOrder(ctx context.Context, db *sql.DB, ob *sqloutbox.Store, orders, topic string, o orderCreated) (outbox.Message, error) {
	payload, err := json.Marshal(o)
	if err != nil {
		return outbox.Message{}, err
	}
	// Enqueue assigns a UUIDv7 to a message without an id; this one is set
	// here so that the example can publish it again later.
	id, err := uuid.NewV7()
	if err != nil {
		return outbox.Message{}, err
	}
	msg := outbox.Message{ID: id.String(), Topic: topic, Key: o.Customer, Payload: payload}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return outbox.Message{}, err
	}
	defer tx.Rollback() // no-op after Commit
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+orders+" (id, customer) VALUES ($1, $2)", o.Order, o.Customer); err != nil {
		return outbox.Message{}, err
	}
	if err := ob.Enqueue(ctx, tx, msg); err != nil {
		return outbox.Message{}, err
	}
	return msg, tx.Commit()
}

// placeFailingOrder writes an order and its message, then rolls back, as when
// the card is declined after the order was written.
func placeFailingOrder(ctx context.Context, db *sql.DB, ob *sqloutbox.Store, orders, topic, runID string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	o := orderCreated{Order: "ord_" + runID + "_declined", Customer: runID + "_dave"}
	payload, _ := json.Marshal(o)
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+orders+" (id, customer) VALUES ($1, $2)", o.Order, o.Customer); err != nil {
		return err
	}
	if err := ob.Enqueue(ctx, tx, outbox.Message{Topic: topic, Key: o.Customer, Payload: payload}); err != nil {
		return err
	}
	return tx.Rollback() // the order and its message are undone together
}

// consume fetches messages and ships each order once, until want orders of
// this run are shipped and the redelivery after a simulated crash was
// skipped, or 30 s have passed.
func consume(ctx context.Context, cons jetstream.Consumer, inbox *sqlstore.Store, db *sql.DB, shipments, runID string, want int, s *summary) error {
	deadline := time.Now().Add(30 * time.Second)
	crashed := false
	for s.Shipped < want || s.Duplicates == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("shipped %d of %d orders in 30 s", s.Shipped, want)
		}
		batch, err := cons.Fetch(50, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			var o orderCreated
			if err := json.Unmarshal(msg.Data(), &o); err != nil {
				_ = msg.Term() // a poison message: never redelivered
				continue
			}
			ship := func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO "+shipments+" (order_id, customer, seq) VALUES ($1, $2, $3)", o.Order, o.Customer, o.Seq)
				return err
			}
			if !crashed && strings.HasPrefix(o.Order, "ord_"+runID+"_") {
				// The consumer ships the first order and dies before it
				// acknowledges: JetStream delivers the message again.
				crashed = true
				if _, err := inbox.Process(ctx, "shipping", msg.Headers().Get(jetstream.MsgIDHeader), ship); err != nil {
					return err
				}
				s.Shipped++
				_ = msg.Nak()
				continue
			}
			dup, err := natspub.Consume(ctx, inbox, "shipping", msg, ship)
			switch {
			case err != nil:
				return err
			case dup:
				s.Duplicates++
			case strings.HasPrefix(o.Order, "ord_"+runID+"_"):
				s.Shipped++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// countRunMessages counts the messages of this run in the stream.
func countRunMessages(ctx context.Context, js jetstream.JetStream, stream, topic, runID string) (int, error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{topic}})
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	n, total := 0, int(info.NumPending)
	for range total {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return 0, err
		}
		var o orderCreated
		if json.Unmarshal(msg.Data(), &o) == nil && strings.HasPrefix(o.Order, "ord_"+runID+"_") {
			n++
		}
	}
	return n, nil
}

// checkOrder counts the shipments of a customer that came before one placed
// earlier.
func checkOrder(ctx context.Context, db *sql.DB, shipments, runID string, s *summary) error {
	rows, err := db.QueryContext(ctx, "SELECT customer, seq FROM "+shipments+" WHERE customer LIKE $1 ORDER BY n", runID+"_%")
	if err != nil {
		return err
	}
	defer rows.Close()
	last := map[string]int{}
	for rows.Next() {
		var cust string
		var seq int
		if err := rows.Scan(&cust, &seq); err != nil {
			return err
		}
		if prev, ok := last[cust]; ok && seq <= prev {
			s.OrderBroken++
		}
		last[cust] = seq
	}
	return rows.Err()
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
