package housekeeping_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/housekeeping"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/retry"
)

// retention is what the test's expired rows outlived and its fresh rows
// have not: long enough that a loaded machine sweeps the fresh rows before
// they turn, short enough for a test.
const retention = 10 * time.Second

// Every real store implements the interface its option takes.
var (
	_ housekeeping.IdempotencyStore = (*sqlstore.Store)(nil)
	_ housekeeping.InboxStore       = (*sqlstore.Store)(nil)
	_ housekeeping.OutboxStore      = (*sqloutbox.Store)(nil)
	_ housekeeping.DeadLetterStore  = (*sqloutbox.Store)(nil)
	_ housekeeping.GuardStore       = (*sqlstore.Store)(nil)
	_ housekeeping.CatchupStore     = (*sqlcatchup.Store)(nil)
)

// published succeeds for topic "ok" and fails for good otherwise.
type published struct{}

func (published) Publish(_ context.Context, d outbox.Delivery) error {
	if d.Topic == "ok" {
		return nil
	}
	return retry.Permanent(errors.New("refused for good"))
}

// rows is what a test wrote of one generation (expired or fresh).
type rows struct {
	completed, abandoned, live, inbox, delivered, dead, pending int
	guard, failing                                              int
}

// fixture writes rows of every kind through the real stores.
type fixture struct {
	t    *testing.T
	db   database
	idem *sqlstore.Store
	out  *sqloutbox.Store
	cu   *sqlcatchup.Store
	n    int
}

func newFixture(t *testing.T, d steadfast.Dialect) *fixture {
	db := newDatabase(t, d)
	h := db.open(t)
	f := &fixture{t: t, db: db}
	var err error
	// Abandoned claims may go a millisecond after their lease.
	if f.idem, err = sqlstore.New(h, d, sqlstore.WithTable(db.prefix+"_idem"), sqlstore.WithAbandonedRetention(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if f.out, err = sqloutbox.New(h, d, sqloutbox.WithTable(db.prefix+"_ob"), sqloutbox.WithoutNotify(), sqloutbox.WithKeepDelivered()); err != nil {
		t.Fatal(err)
	}
	if f.cu, err = sqlcatchup.New(h, d, sqlcatchup.WithTable(db.prefix+"_cu")); err != nil {
		t.Fatal(err)
	}
	if err := f.cu.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.idem.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.out.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	db.dropLater(t, h, db.prefix+"_idem", db.prefix+"_idem_inbox", db.prefix+"_idem_order", db.prefix+"_ob", db.prefix+"_ob_pause", db.prefix+"_ob_pauses", db.prefix+"_lease", db.prefix+"_cu", db.prefix+"_cu_failed")
	return f
}

func (f *fixture) key() string {
	f.n++
	return fmt.Sprintf("k%05d", f.n)
}

// write writes r through the stores and lets the relay settle the
// messages. Records completed here keep for keep; claims live for an hour.
func (f *fixture) write(r rows, keep time.Duration) {
	t, ctx := f.t, f.t.Context()
	for range r.completed {
		k := f.key()
		c, err := f.idem.Claim(ctx, k, "fp", time.Hour)
		if err != nil || !c.Acquired {
			t.Fatalf("claim %s: %+v %v", k, c, err)
		}
		if err := f.idem.Complete(ctx, k, c.Token, []byte("done"), keep); err != nil {
			t.Fatal(err)
		}
	}
	for range r.abandoned {
		if c, err := f.idem.Claim(ctx, f.key(), "fp", time.Millisecond); err != nil || !c.Acquired {
			t.Fatalf("claim: %+v %v", c, err)
		}
	}
	for range r.live {
		if c, err := f.idem.Claim(ctx, f.key(), "fp", time.Hour); err != nil || !c.Acquired {
			t.Fatalf("claim: %+v %v", c, err)
		}
	}
	h := f.db.open(t)
	for range r.inbox {
		tx, err := h.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if first, err := f.idem.MarkProcessed(ctx, tx, "consumer", f.key()); err != nil || !first {
			t.Fatalf("inbox: %v %v", first, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for range r.guard {
		tx, err := h.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if applied, err := f.idem.ApplyVersion(ctx, tx, f.key(), 3); err != nil || !applied {
			t.Fatalf("guard: %v %v", applied, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for range r.failing {
		if _, err := f.cu.Fail(ctx, "provider", catchup.Event{ID: f.key(), Type: "t", Payload: []byte("{}")}, "handler failed"); err != nil {
			t.Fatal(err)
		}
	}
	var msgs []outbox.Message
	for range r.delivered {
		msgs = append(msgs, outbox.Message{Topic: "ok", Payload: []byte("{}")})
	}
	for range r.dead {
		msgs = append(msgs, outbox.Message{Topic: "bad", Payload: []byte("{}")})
	}
	for range r.pending {
		msgs = append(msgs, outbox.Message{Topic: "later", Payload: []byte("{}"), NotBefore: time.Now().Add(time.Hour)})
	}
	if err := f.out.EnqueueWithoutTx(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	before, err := f.out.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.NewRelay(f.out, published{}, outbox.WithPollInterval(20*time.Millisecond), outbox.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := relay.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := f.out.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Dead == before.Dead+int64(r.dead) && st.Pending == int64(r.pending) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not settle the messages: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// count returns the rows of table.
func (f *fixture) count(table string) int {
	h := f.db.open(f.t)
	var n int
	if err := h.QueryRowContext(f.t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestTwoReplicasRemoveExactlyTheExpiredRows writes rows of every kind
// through the real stores, some past their time, some not, and runs two
// Sweepers at once (each on a pool of its own, as two processes): the rows
// they removed add up to the expired rows, and every row not yet expired
// is still there. On PostgreSQL, SQLite and MariaDB.
func TestTwoReplicasRemoveExactlyTheExpiredRows(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, d)
			expired := rows{completed: 30, abandoned: 5, inbox: 40, delivered: 25, dead: 12, guard: 9, failing: 8}
			fresh := rows{completed: 20, live: 10, inbox: 15, delivered: 10, dead: 6, pending: 7, guard: 4, failing: 3}
			f.write(expired, time.Millisecond)
			time.Sleep(retention + 500*time.Millisecond)
			start := time.Now()
			f.write(fresh, time.Hour)

			var readers []*sdkmetric.ManualReader
			var replicas []*housekeeping.Sweeper
			for range 2 {
				reader := sdkmetric.NewManualReader()
				readers = append(readers, reader)
				s, err := housekeeping.New(f.db.open(t), d,
					housekeeping.WithTable(f.db.prefix+"_lease"),
					housekeeping.WithIdempotency(f.idem),
					housekeeping.WithInbox(f.idem, retention),
					housekeeping.WithOutbox(f.out, retention),
					housekeeping.WithDeadLetters(f.out, retention),
					housekeeping.WithOrderingGuard(f.idem, retention),
					housekeeping.WithCatchup(f.cu, retention),
					housekeeping.WithBatchSize(7), // several batches of every kind
					housekeeping.WithInterval(time.Hour),
					housekeeping.WithLogger(quiet()),
					housekeeping.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Migrate(t.Context()); err != nil {
					t.Fatal(err)
				}
				replicas = append(replicas, s)
			}
			var wg sync.WaitGroup
			for _, s := range replicas {
				wg.Go(func() {
					if err := s.Start(t.Context()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			want := map[string]int64{
				"idempotency_records": int64(expired.completed + expired.abandoned),
				"inbox":               int64(expired.inbox),
				"outbox_delivered":    int64(expired.delivered),
				"outbox_dead_letters": int64(expired.dead),
				"ordering_guard":      int64(expired.guard),
				"catchup_failing":     int64(expired.failing),
			}
			var got map[string]int64
			var passes []map[string]int64
			deadline := time.Now().Add(30 * time.Second)
			for {
				got, passes = map[string]int64{}, nil
				for _, r := range readers {
					removed, p := counts(t, r)
					for k, v := range removed {
						got[k] += v
					}
					passes = append(passes, p)
				}
				if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, s := range replicas {
				if err := s.Stop(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if time.Since(start) > retention {
				t.Fatalf("the sweep took until the fresh rows expired too (%v): the machine is too slow for this test's retention", time.Since(start))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("removed %v, want %v", got, want)
			}
			if swept := passes[0]["swept"] + passes[1]["swept"]; swept != 1 {
				t.Fatalf("passes %v: want one replica to sweep, the other to find the lease held", passes)
			}

			if n := f.count(f.db.prefix + "_idem"); n != fresh.completed+fresh.live {
				t.Errorf("idempotency records left: %d, want %d", n, fresh.completed+fresh.live)
			}
			if n := f.count(f.db.prefix + "_idem_inbox"); n != fresh.inbox {
				t.Errorf("inbox rows left: %d, want %d", n, fresh.inbox)
			}
			if n := f.count(f.db.prefix + "_idem_order"); n != fresh.guard {
				t.Errorf("ordering-guard rows left: %d, want %d", n, fresh.guard)
			}
			if n := f.count(f.db.prefix + "_cu_failed"); n != fresh.failing {
				t.Errorf("catch-up failing records left: %d, want %d", n, fresh.failing)
			}
			if n := f.count(f.db.prefix + "_ob"); n != fresh.delivered+fresh.dead+fresh.pending {
				t.Errorf("outbox messages left: %d, want %d", n, fresh.delivered+fresh.dead+fresh.pending)
			}
			st, err := f.out.Stats(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.Pending != int64(fresh.pending) || st.Dead != int64(fresh.dead) {
				t.Errorf("outbox after the sweep: %+v, want %d pending and %d dead", st, fresh.pending, fresh.dead)
			}
			// The live claims are still held: a duplicate is told to wait.
			before := expired.completed + expired.abandoned + expired.live + expired.inbox + expired.guard + expired.failing + fresh.completed + fresh.abandoned
			for i := before + 1; i <= before+fresh.live; i++ {
				k := fmt.Sprintf("k%05d", i)
				rec, err := f.idem.Get(t.Context(), k)
				if err != nil || rec.Status != idempotency.StatusInProgress {
					t.Fatalf("live claim %s: %+v, %v", k, rec, err)
				}
			}
		})
	}
}

// TestStoreFailureDoesNotStopTheOthers: one store failing (its table is
// gone) is reported, and the others are still swept.
func TestStoreFailureDoesNotStopTheOthers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, steadfast.SQLite)
	f.write(rows{completed: 3}, time.Millisecond)
	time.Sleep(10 * time.Millisecond)
	h := f.db.open(t)
	if _, err := h.Exec("DROP TABLE " + f.db.prefix + "_ob"); err != nil {
		t.Fatal(err)
	}
	s, err := housekeeping.New(h, steadfast.SQLite, housekeeping.WithTable(f.db.prefix+"_lease"), housekeeping.WithLogger(quiet()),
		housekeeping.WithOutbox(f.out, time.Hour), housekeeping.WithIdempotency(f.idem))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(t.Context())
	if n != 3 || err == nil || !strings.Contains(err.Error(), "housekeeping: outbox_delivered:") {
		t.Fatalf("Sweep: %d, %v; want 3 removed and the outbox's failure", n, err)
	}
}
