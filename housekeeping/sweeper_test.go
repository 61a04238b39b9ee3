package housekeeping_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/housekeeping"
)

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	db := newDatabase(t, steadfast.SQLite).open(t)
	store := &fakeRows{}
	var nilStore *fakeRows
	cases := []struct {
		name string
		d    steadfast.Dialect
		opts []housekeeping.Option
		want string
	}{
		{"nothing to sweep", steadfast.SQLite, nil, "housekeeping: New: nothing to sweep"},
		{"nil option", steadfast.SQLite, []housekeeping.Option{nil}, "housekeeping: New: option 0 is nil"},
		{"nil store", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(nilStore)}, "housekeeping: New: WithIdempotency: store is nil"},
		{"nil inbox", steadfast.SQLite, []housekeeping.Option{housekeeping.WithInbox(nil, time.Hour)}, "housekeeping: New: WithInbox: store is nil"},
		{"no retention", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithOutbox(nil, 0)}, "housekeeping: New: WithOutbox: store is nil"},
		{"bad interval", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithInterval(time.Millisecond)}, "housekeeping: New: WithInterval: interval 1ms must be at least 1s"},
		{"bad lease", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithLease(0)}, "housekeeping: New: WithLease: lease 0s must be at least 1s"},
		{"bad batch", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithBatchSize(0)}, "housekeeping: New: WithBatchSize: batch size 0 must be between 1 and 100000"},
		{"bad table", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithTable("a b")}, `housekeeping: New: WithTable: table name "a b"`},
		{"nil logger", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithLogger(nil)}, "housekeeping: New: WithLogger: logger is nil"},
		{"nil meter", steadfast.SQLite, []housekeeping.Option{housekeeping.WithIdempotency(store), housekeeping.WithMeterProvider(nil)}, "housekeeping: New: WithMeterProvider: meter provider is nil"},
		{"bad dialect", 0, []housekeeping.Option{housekeeping.WithIdempotency(store)}, "housekeeping: New: unknown dialect"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := housekeeping.New(db, c.d, c.opts...)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error starting %q", err, c.want)
			}
		})
	}
	if _, err := housekeeping.New(nil, steadfast.SQLite, housekeeping.WithIdempotency(store)); err == nil || err.Error() != "housekeeping: New: db is nil" {
		t.Fatalf("New(nil db): %v", err)
	}
	bad := []housekeeping.Option{
		housekeeping.WithInbox(nilInbox{}, -time.Second),
		housekeeping.WithOutbox(nilOutbox{}, 0),
		housekeeping.WithDeadLetters(nilOutbox{}, 0),
		housekeeping.WithOrderingGuard(nilInbox{}, 0),
	}
	for _, o := range bad {
		if _, err := housekeeping.New(db, steadfast.SQLite, o); err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Fatalf("non-positive retention: %v", err)
		}
	}
}

type nilInbox struct{}

func (nilInbox) PurgeInbox(context.Context, time.Duration, int) (int64, error) { return 0, nil }
func (nilInbox) PurgeGuard(context.Context, time.Duration, int) (int64, error) { return 0, nil }

type nilOutbox struct{}

func (nilOutbox) Cleanup(context.Context, time.Duration, int) (int, error)     { return 0, nil }
func (nilOutbox) CleanupDead(context.Context, time.Duration, int) (int, error) { return 0, nil }

// sweepers returns n Sweepers, each on a pool of its own (as n processes
// would have; one SQLite file for all), sharing one lease table, migrated
// at once from every replica.
func sweepers(t *testing.T, db database, n int, opts ...housekeeping.Option) []*housekeeping.Sweeper {
	t.Helper()
	table := db.prefix + "_lease"
	var out []*housekeeping.Sweeper
	for i := range n {
		h := db.open(t)
		if i == 0 {
			db.dropLater(t, h, table)
		}
		s, err := housekeeping.New(h, db.d, append([]housekeeping.Option{housekeeping.WithTable(table), housekeeping.WithLogger(quiet())}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, s := range out {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestOneReplicaSweepsPerInterval: two replicas sweep at once; one takes
// the lease and removes everything, the other removes nothing, and neither
// sweeps again before the interval is over, except the holder itself.
func TestOneReplicaSweepsPerInterval(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			rows := &fakeRows{left: 2500}
			s := sweepers(t, newDatabase(t, d), 2, housekeeping.WithIdempotency(rows), housekeeping.WithInterval(time.Hour))
			var wg sync.WaitGroup
			got := make([]int64, 2)
			for i := range s {
				wg.Go(func() {
					n, err := s[i].Sweep(t.Context())
					if err != nil {
						t.Error(err)
					}
					got[i] = n
				})
			}
			wg.Wait()
			if got[0]+got[1] != 2500 || (got[0] != 0 && got[1] != 0) {
				t.Fatalf("removed %v, want 2500 by one replica", got)
			}
			holder, other := s[0], s[1]
			if got[0] == 0 {
				holder, other = s[1], s[0]
			}
			calls := rows.Calls()
			if n, err := other.Sweep(t.Context()); n != 0 || err != nil || rows.Calls() != calls {
				t.Fatalf("the other replica swept within the interval: %d, %v, %d calls", n, err, rows.Calls()-calls)
			}
			if _, err := holder.Sweep(t.Context()); err != nil || rows.Calls() != calls+1 {
				t.Fatalf("the holder did not sweep again: %v, %d calls", err, rows.Calls()-calls)
			}
		})
	}
}

// TestTakeoverAfterInterval: when the holder does not come back (it died),
// another replica sweeps once the interval it reserved is over.
func TestTakeoverAfterInterval(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			rows := &fakeRows{left: 10}
			s := sweepers(t, newDatabase(t, d), 2, housekeeping.WithIdempotency(rows), housekeeping.WithInterval(time.Second))
			if n, err := s[0].Sweep(t.Context()); n != 10 || err != nil {
				t.Fatalf("first sweep: %d, %v", n, err)
			}
			if _, err := s[1].Sweep(t.Context()); err != nil || rows.Calls() != 1 {
				t.Fatalf("second replica swept at once: %v, %d calls", err, rows.Calls())
			}
			deadline := time.Now().Add(10 * time.Second)
			for rows.Calls() == 1 {
				if time.Now().After(deadline) {
					t.Fatal("the second replica never took over")
				}
				time.Sleep(200 * time.Millisecond)
				if _, err := s[1].Sweep(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestLeaseLostMidPass: a replica whose batch outlasts its lease finds the
// lease taken over, stops its pass and says so; what both removed adds up.
func TestLeaseLostMidPass(t *testing.T) {
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			db := newDatabase(t, d)
			slow := &fakeRows{left: 5000, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
			fast := &fakeRows{left: 300}
			a := sweepers(t, db, 1, housekeeping.WithIdempotency(slow), housekeeping.WithLease(time.Second), housekeeping.WithBatchSize(1000))[0]
			h := db.open(t)
			b, err := housekeeping.New(h, d, housekeeping.WithTable(db.prefix+"_lease"), housekeeping.WithLogger(quiet()),
				housekeeping.WithIdempotency(fast), housekeeping.WithLease(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				n   int64
				err error
			}
			done := make(chan result)
			go func() {
				n, err := a.Sweep(t.Context())
				done <- result{n, err}
			}()
			<-slow.entered // a removed a full batch, renewed, and waits in its second
			time.Sleep(1500 * time.Millisecond)
			if n, err := b.Sweep(t.Context()); n != 300 || err != nil {
				t.Fatalf("b did not take the lease that ran out: %d, %v", n, err)
			}
			close(slow.gate)
			r := <-done
			if r.err == nil || !strings.Contains(r.err.Error(), "taken over by another replica") {
				t.Fatalf("a's pass: %v, want the lease lost", r.err)
			}
			if r.n != 2000 {
				t.Fatalf("a removed %d, want 2000 (two batches, then it noticed)", r.n)
			}
		})
	}
}

// TestStartStop: Start sweeps at once and per interval; Stop ends the
// goroutine (goleak checks) and is safe to call twice; Start after Stop is
// an error. The counts go to OpenTelemetry.
func TestStartStop(t *testing.T) {
	t.Parallel()
	rows := &fakeRows{left: 1234}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s := sweepers(t, newDatabase(t, steadfast.SQLite), 1, housekeeping.WithIdempotency(rows), housekeeping.WithMeterProvider(mp))[0]
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rows.Calls() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.Start(ctx); err == nil {
		t.Fatal("Start after Stop: no error")
	}
	removed, passes := counts(t, reader)
	if removed["idempotency_records"] != 1234 || passes["swept"] != 1 {
		t.Fatalf("metrics: removed %v, passes %v", removed, passes)
	}
}

// counts reads steadfast.housekeeping.removed by kind and steadfast.housekeeping.passes by
// outcome from reader.
func counts(t *testing.T, reader sdkmetric.Reader) (removed, passes map[string]int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	removed, passes = map[string]int64{}, map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, p := range sum.DataPoints {
				switch m.Name {
				case "steadfast.housekeeping.removed":
					v, _ := p.Attributes.Value("housekeeping.kind")
					removed[v.AsString()] += p.Value
				case "steadfast.housekeeping.passes":
					v, _ := p.Attributes.Value("housekeeping.outcome")
					passes[v.AsString()] += p.Value
				}
			}
		}
	}
	return removed, passes
}
