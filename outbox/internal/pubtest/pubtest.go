package pubtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL outbox of the benchmarks
	_ "modernc.org/sqlite"             // the outbox of the tests

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// Outbox is an outbox of a test's own: SQLite in a temporary directory,
// PostgreSQL in a table of the test's own, or in memory.
type Outbox struct {
	Store outbox.Store
	// enqueue commits msgs in one transaction.
	enqueue func(msgs []outbox.Message) error
}

// NewOutbox creates a SQLite outbox for t.
func NewOutbox(t testing.TB) *Outbox {
	t.Helper()
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return newSQLOutbox(t, db, steadfast.SQLite)
}

// newSQLOutbox makes a store that keeps delivered messages, so that tests
// read a message's final state with Record.
func newSQLOutbox(t testing.TB, db *sql.DB, d steadfast.Dialect, opts ...sqloutbox.Option) *Outbox {
	t.Helper()
	store, err := sqloutbox.New(db, d, append([]sqloutbox.Option{sqloutbox.WithKeepDelivered()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &Outbox{Store: store, enqueue: func(msgs []outbox.Message) error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if err := store.Enqueue(context.Background(), tx, msgs...); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}}
}

// NewMemOutbox creates an outbox in memory on the process's clock: inside a
// testing/synctest bubble, its leases, backoffs and pauses follow the
// bubble's fake clock.
func NewMemOutbox(t testing.TB) *Outbox {
	t.Helper()
	store := memstore.New()
	return &Outbox{Store: store, enqueue: func(msgs []outbox.Message) error {
		tx, err := store.Begin(context.Background())
		if err != nil {
			return err
		}
		if err := tx.Enqueue(context.Background(), msgs...); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	}}
}

// NewInbox creates the inbox of idempotency/sqlstore on a SQLite database
// in t's temporary directory, for the consumers' Consume tests.
func NewInbox(t testing.TB) *sqlstore.Store {
	t.Helper()
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "inbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := sqlstore.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// NewPostgresOutbox creates an outbox in a table of t's own on
// TEST_POSTGRES_URL (skipping t when it is unset), dropped at the end.
func NewPostgresOutbox(t testing.TB) *Outbox {
	t.Helper()
	url := testenv.PostgresURL(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { _ = db.Close() })
	table := "pubtest_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + table) })
	return newSQLOutbox(t, db, steadfast.Postgres, sqloutbox.WithTable(table))
}

// Enqueue commits msgs, in batches of at most 1,000 per transaction.
func (o *Outbox) Enqueue(t testing.TB, msgs ...outbox.Message) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(len(msgs), 1000)
		if err := o.enqueue(msgs[:n]); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// Record returns the stored message id.
func (o *Outbox) Record(t testing.TB, id string) outbox.Record {
	t.Helper()
	r, err := o.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// StartRelay runs a relay from store to pub until the returned stop is
// called or the test ends.
func StartRelay(t testing.TB, store outbox.Store, pub outbox.Publisher, opts ...outbox.Option) (stop func()) {
	t.Helper()
	r, err := outbox.NewRelay(store, pub, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Until waits for cond, looking every step (2 ms when 0), at most 15,000
// times (30 s at 2 ms: only a broken test waits that long). Inside a
// testing/synctest bubble the steps are on the bubble's fake clock, so they
// let the bubble's timers (backoffs, pauses, leases) fire.
func Until(t testing.TB, what string, step time.Duration, cond func() bool) {
	t.Helper()
	if step <= 0 {
		step = 2 * time.Millisecond
	}
	for i := 0; !cond(); i++ {
		if i == 15_000 {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(step)
	}
}

// Counting wraps a Publisher and counts the publishes that returned nil.
type Counting struct {
	outbox.Publisher
	ok    atomic.Int64
	mu    sync.Mutex
	goal  int64
	reach chan struct{}
}

// Publish publishes through the wrapped publisher and counts successes.
func (c *Counting) Publish(ctx context.Context, d outbox.Delivery) error {
	err := c.Publisher.Publish(ctx, d)
	if err == nil {
		n := c.ok.Add(1)
		c.mu.Lock()
		if c.reach != nil && n == c.goal {
			close(c.reach)
			c.reach = nil
		}
		c.mu.Unlock()
	}
	return err
}

// Delivered returns the number of successful publishes.
func (c *Counting) Delivered() int64 { return c.ok.Load() }

// await returns a channel closed once n more publishes succeeded.
func (c *Counting) await(n int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	c.goal = c.ok.Load() + n
	if n <= 0 {
		close(ch)
		return ch
	}
	c.reach = ch
	return ch
}

// Workers is the concurrency of the throughput benchmark: the relay's
// WithConcurrency and the number of goroutines of the baseline.
const Workers = 64

// Throughput runs these sub-benchmarks over b.N messages and reports msgs/s:
//
//   - "baseline=client": direct(ctx, i) for every i, from Workers
//     goroutines: the broker client publishing and waiting for each
//     confirmation itself;
//   - "publisher": pub.Publish of a delivery of msg(i) for every i, from
//     Workers goroutines: the publisher's own cost, without an outbox;
//   - "relay/sqlite" and, when TEST_POSTGRES_URL is set, "relay/postgres":
//     msg(i) for every i enqueued in an outbox beforehand (not timed), then
//     a relay delivering them all through pub, with Workers publishes in
//     flight.
//
// The ratios of their ns/op are the costs of the publisher and of going
// through the outbox.
func Throughput(b *testing.B, pub outbox.Publisher, msg func(i int) outbox.Message, direct func(ctx context.Context, i int) error) {
	b.Run("baseline=client", func(b *testing.B) { parallel(b, direct) })
	b.Run("publisher", func(b *testing.B) {
		parallel(b, func(ctx context.Context, i int) error {
			id, _ := uuid.NewV7()
			m := msg(i)
			m.ID = id.String()
			return pub.Publish(ctx, outbox.Delivery{Message: m, Attempt: 1})
		})
	})
	b.Run("relay/sqlite", func(b *testing.B) { viaRelay(b, NewOutbox(b), pub, msg) })
	if os.Getenv(testenv.PostgresVar) != "" {
		b.Run("relay/postgres", func(b *testing.B) { viaRelay(b, NewPostgresOutbox(b), pub, msg) })
	}
}

func parallel(b *testing.B, call func(ctx context.Context, i int) error) {
	{
		b.ReportAllocs()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, Workers)
		ctx := context.Background()
		b.ResetTimer()
		for range Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= b.N {
						return
					}
					if err := call(ctx, i); err != nil {
						errs <- fmt.Errorf("message %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
}

func viaRelay(b *testing.B, ob *Outbox, pub outbox.Publisher, msg func(i int) outbox.Message) {
	{
		b.ReportAllocs()
		msgs := make([]outbox.Message, b.N)
		for i := range msgs {
			msgs[i] = msg(i)
		}
		ob.Enqueue(b, msgs...)
		counting := &Counting{Publisher: pub}
		done := counting.await(int64(b.N))
		b.ResetTimer()
		stop := StartRelay(b, ob.Store, counting,
			outbox.WithConcurrency(Workers), outbox.WithDestinationConcurrency(Workers),
			outbox.WithPollInterval(10*time.Millisecond), outbox.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("relay delivered %d of %d messages", counting.Delivered(), b.N)
		}
		b.StopTimer()
		stop()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	}
}
