package benchmarks_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/benchcpu"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
)

// The outbox benchmarks measure a relay end to end on PostgreSQL: one op is
// opSize messages written in transactions of txSize messages each (the
// application's writes), while the relay, started beforehand, delivers them
// to a publisher that does nothing but count. The clock runs from the first
// insert to the last delivery: ns/op, B/op and allocs/op are per opSize
// messages (inserting and relaying), msgs/s is the throughput, cpu-us/msg
// this process's CPU time per message (inserting and relaying; the
// database server's is not counted). An op is that large so that a relay
// that polls is measured on a stream of messages rather than on one poll
// interval. Each library runs at its
// defaults except one: all poll every pollInterval (their defaults are 1 s),
// so that the figures compare the relays rather than when each happens to
// look for work; steadfast and River are also woken by LISTEN/NOTIFY.
// Each run works in a PostgreSQL schema of its own, dropped at the end.
//
//   - steadfast: outbox.Relay on outbox/sqloutbox, messages without a
//     partition key (unordered), and with one of 16 keys (per-key order);
//   - watermill: the forwarder component (components/forwarder) over
//     watermill-sql's PostgreSQL subscriber, the transactional outbox that
//     Watermill documents;
//   - river: a job per message, inserted with InsertManyTx, worked by a no-op
//     worker, with 100 workers (River fetches at most as many jobs as it has
//     idle workers, then waits its fetch cooldown, 100 ms: about 1,000 jobs/s
//     with 100 workers), and with 1,000.
const (
	opSize       = 1000
	pollInterval = 100 * time.Millisecond
	txSize       = 100
	payload      = `{"order":"ord_000001","customer":"cus_000001","amount":4200,"currency":"EUR","items":[{"sku":"sku_1","qty":2},{"sku":"sku_2","qty":1}]}`
)

func BenchmarkOutboxRelay(b *testing.B) {
	base := os.Getenv("TEST_POSTGRES_URL")
	if base == "" {
		b.Skip("TEST_POSTGRES_URL is not set: the outbox benchmarks need PostgreSQL")
	}
	b.Run("steadfast", func(b *testing.B) { benchSteadfast(b, base, 0) })
	b.Run("steadfast-16-keys", func(b *testing.B) { benchSteadfast(b, base, 16) })
	b.Run("watermill-forwarder", func(b *testing.B) { benchWatermill(b, base) })
	b.Run("river", func(b *testing.B) { benchRiver(b, base, 100) })
	b.Run("river-1000-workers", func(b *testing.B) { benchRiver(b, base, 1000) })
}

// relayRun times one run of b.N ops: it calls insert for batches of txSize
// messages until b.N × opSize are written, then waits until delivered
// reaches that number.
func relayRun(b *testing.B, delivered *atomic.Int64, insert func(ctx context.Context, first, count int) error) {
	b.Helper()
	ctx := context.Background()
	n := b.N * opSize
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := benchcpu.Now()
	start := time.Now()
	for i := 0; i < n; i += txSize {
		if err := insert(ctx, i, min(txSize, n-i)); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for delivered.Load() < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d messages in 5 minutes", delivered.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	elapsed := time.Since(start)
	cpu1, cpuOK1 := benchcpu.Now()
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	if cpuOK && cpuOK1 {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/1e3/float64(n), "cpu-us/msg")
	}
}

// schema creates a PostgreSQL schema for one run and returns its name and a
// connection URL whose search_path is that schema; the schema is dropped at
// the end of the benchmark.
func schema(b *testing.B, base string) (string, string) {
	b.Helper()
	buf := make([]byte, 4)
	_, _ = rand.Read(buf)
	name := "bench_" + hex.EncodeToString(buf)
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()

	db, err := sql.Open("pgx", base)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE SCHEMA " + name); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			b.Error(err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA " + name + " CASCADE"); err != nil {
			b.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name, u.String()
}

func openDB(b *testing.B, dsn string) *sql.DB {
	b.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(10)
	b.Cleanup(func() { _ = db.Close() })
	return db
}

// countingPublisher is the no-op outbox.Publisher.
type countingPublisher struct{ n *atomic.Int64 }

func (p countingPublisher) Publish(context.Context, outbox.Delivery) error {
	p.n.Add(1)
	return nil
}

func benchSteadfast(b *testing.B, base string, keys int) {
	ctx := context.Background()
	name, dsn := schema(b, base)
	db := openDB(b, dsn)
	store, err := sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(name+".outbox"))
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	listener, err := pgxoutbox.NewListener(store, db)
	if err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	relay, err := outbox.NewRelay(store, countingPublisher{&delivered},
		outbox.WithNotifier(listener), outbox.WithPollInterval(pollInterval))
	if err != nil {
		b.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := relay.Stop(ctx); err != nil {
			b.Error(err)
		}
	}()
	msgs := make([]outbox.Message, txSize)
	relayRun(b, &delivered, func(ctx context.Context, first, count int) error {
		for i := range count {
			msgs[i] = outbox.Message{Topic: "events", Payload: []byte(payload)}
			if keys > 0 {
				msgs[i].Key = fmt.Sprintf("key-%02d", (first+i)%keys)
			}
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := store.Enqueue(ctx, tx, msgs[:count]...); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// countingWatermill is the no-op message.Publisher the forwarder publishes to.
type countingWatermill struct{ n *atomic.Int64 }

func (p countingWatermill) Publish(_ string, msgs ...*message.Message) error {
	p.n.Add(int64(len(msgs)))
	return nil
}

func (countingWatermill) Close() error { return nil }

func benchWatermill(b *testing.B, base string) {
	_, dsn := schema(b, base)
	db := openDB(b, dsn)
	logger := watermill.NopLogger{}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
		SchemaAdapter:    wsql.DefaultPostgreSQLSchema{},
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     pollInterval,
	}, logger)
	if err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	fwd, err := forwarder.NewForwarder(sub, countingWatermill{&delivered}, logger, forwarder.Config{ForwarderTopic: "outbox"})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fwd.Run(context.Background()) }()
	defer func() {
		if err := fwd.Close(); err != nil {
			b.Error(err)
		}
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	<-fwd.Running()
	// The subscription creates the table asynchronously; wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var exists bool
		if err := db.QueryRow("SELECT to_regclass('watermill_outbox') IS NOT NULL").Scan(&exists); err != nil {
			b.Fatal(err)
		}
		if exists {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("watermill did not create its table")
		}
		time.Sleep(10 * time.Millisecond)
	}

	msgs := make([]*message.Message, txSize)
	relayRun(b, &delivered, func(ctx context.Context, _, count int) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, logger)
		if err != nil {
			return err
		}
		fpub := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: "outbox"})
		for i := range count {
			msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(payload))
		}
		if err := fpub.Publish("events", msgs[:count]...); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// eventArgs is the River job that carries one message.
type eventArgs struct {
	Payload json.RawMessage `json:"payload"`
}

func (eventArgs) Kind() string { return "event" }

func benchRiver(b *testing.B, base string, maxWorkers int) {
	ctx := context.Background()
	name, dsn := schema(b, base)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: name})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		b.Fatal(err)
	}
	var delivered atomic.Int64
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(context.Context, *river.Job[eventArgs]) error {
		delivered.Add(1)
		return nil
	}))
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: maxWorkers}},
		Workers:           workers,
		Schema:            name,
		FetchPollInterval: pollInterval,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := client.Stop(ctx); err != nil {
			b.Error(err)
		}
	}()
	params := make([]river.InsertManyParams, txSize)
	relayRun(b, &delivered, func(ctx context.Context, _, count int) error {
		for i := range count {
			params[i] = river.InsertManyParams{Args: eventArgs{Payload: json.RawMessage(payload)}}
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := client.InsertManyTx(ctx, tx, params[:count]); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}
