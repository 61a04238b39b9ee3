package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/retry"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newStore(t testing.TB) (*sql.DB, *sqloutbox.Store) {
	t.Helper()
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, s
}

func enqueue(t testing.TB, db *sql.DB, s *sqloutbox.Store, msgs ...outbox.Message) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(context.Background(), tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestNewRelayValidates(t *testing.T) {
	t.Parallel()
	_, s := newStore(t)
	pub := &outboxtest.Recorder{}
	cases := []struct {
		name string
		opt  outbox.Option
		want string
	}{
		{"batch", outbox.WithBatchSize(0), "outbox: NewRelay: WithBatchSize: batch size 0 must be at least 1"},
		{"concurrency", outbox.WithConcurrency(-1), "WithConcurrency"},
		{"destination concurrency", outbox.WithDestinationConcurrency(0), "WithDestinationConcurrency"},
		{"lease", outbox.WithLease(0), "WithLease"},
		{"publish timeout", outbox.WithPublishTimeout(0), "WithPublishTimeout"},
		{"poll", outbox.WithPollInterval(0), "WithPollInterval"},
		{"nil notifier", outbox.WithNotifier(nil), "WithNotifier: notifier is nil"},
		{"typed nil notifier", outbox.WithNotifier((*nilNotifier)(nil)), "WithNotifier"},
		{"backoff max under base", outbox.WithBackoff(time.Second, time.Millisecond), "WithBackoff"},
		{"backoff base", outbox.WithBackoff(0, time.Second), "WithBackoff"},
		{"attempts", outbox.WithMaxAttempts(0), "WithMaxAttempts"},
		{"retry-after cap", outbox.WithMaxRetryAfter(0), "WithMaxRetryAfter"},
		{"pause", outbox.WithPause(0), "WithPause"},
		{"logger", outbox.WithLogger(nil), "WithLogger"},
		{"meter provider", outbox.WithMeterProvider(nil), "WithMeterProvider"},
		{"tracer provider", outbox.WithTracerProvider(nil), "WithTracerProvider"},
		{"nil option", nil, "outbox: NewRelay: option 0 is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := outbox.NewRelay(s, pub, c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("NewRelay(%s) = %v, want an error with %q", c.name, err, c.want)
			}
		})
	}
	// The lease need not exceed the publish timeout: it is renewed while a
	// publish runs.
	if _, err := outbox.NewRelay(s, pub, outbox.WithLease(time.Second), outbox.WithPublishTimeout(time.Minute)); err != nil {
		t.Errorf("a lease shorter than the publish timeout refused: %v", err)
	}
	for _, c := range []struct {
		name  string
		store outbox.Store
		pub   outbox.Publisher
	}{
		{"nil store", nil, pub},
		{"typed nil store", (*sqloutbox.Store)(nil), pub},
		{"nil publisher", s, nil},
		{"typed nil publisher", s, (*outboxtest.Recorder)(nil)},
	} {
		if _, err := outbox.NewRelay(c.store, c.pub); err == nil || !strings.HasPrefix(err.Error(), "outbox: NewRelay: ") {
			t.Errorf("NewRelay(%s) = %v, want an error", c.name, err)
		}
	}
}

type nilNotifier struct{}

func (*nilNotifier) Listen(ctx context.Context, notify func()) error { return nil }

func TestLifecycle(t *testing.T) {
	t.Parallel()
	_, s := newStore(t)
	r, err := outbox.NewRelay(s, &outboxtest.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Errorf("second Start = %v, want nil", err)
	}
	if err := r.Stop(ctx); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if err := r.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if err := r.Start(ctx); !errors.Is(err, outbox.ErrStopped) {
		t.Errorf("Start after Stop = %v, want ErrStopped", err)
	}
	never, err := outbox.NewRelay(s, &outboxtest.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if err := never.Stop(ctx); err != nil {
		t.Errorf("Stop before Start = %v", err)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	db, s := newStore(t)
	rec := &outboxtest.Recorder{}
	r, err := outbox.NewRelay(s, rec, outbox.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	enqueue(t, db, s, outbox.Message{Topic: "t", Payload: []byte("x")})
	rec.WaitFor(t, time.Minute, 1)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestPublishTimeout: a publisher that hangs is cut off by the publish
// timeout and the message is retried.
func TestPublishTimeout(t *testing.T) {
	t.Parallel()
	db, s := newStore(t)
	var calls int
	rec := &outboxtest.Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		calls++ // one key: publishes of this message never overlap
		if d.Attempt == 1 {
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), outbox.ErrPublishTimeout) {
				t.Errorf("cause %v, want ErrPublishTimeout", context.Cause(ctx))
			}
			return ctx.Err()
		}
		return nil
	}}
	enqueue(t, db, s, outbox.Message{Topic: "t", Key: "k", Payload: []byte("x")})
	r, err := outbox.NewRelay(s, rec, outbox.WithPublishTimeout(50*time.Millisecond), outbox.WithLease(time.Minute),
		outbox.WithBackoff(time.Millisecond, time.Millisecond), outbox.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, time.Minute, 1)
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := rec.Delivered()[0]; d.Attempt != 2 {
		t.Errorf("delivered at attempt %d, want 2", d.Attempt)
	}
	if calls := rec.Calls(); !strings.Contains(calls[0].Headers[outbox.PositionHeader], "1") {
		t.Errorf("position header %q", calls[0].Headers[outbox.PositionHeader])
	}
}

// TestMetrics checks the counters and gauges a user would chart.
func TestMetrics(t *testing.T) {
	t.Parallel()
	db, s := newStore(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	rec := &outboxtest.Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if string(d.Payload) == "bad" {
			return retry.Permanent(errors.New("no"))
		}
		return nil
	}}
	enqueue(t, db, s, outbox.Message{Topic: "a", Payload: []byte("ok")}, outbox.Message{Topic: "a", Payload: []byte("ok")},
		outbox.Message{Topic: "b", Payload: []byte("bad")})
	r, err := outbox.NewRelay(s, rec, outbox.WithMeterProvider(mp), outbox.WithPollInterval(10*time.Millisecond),
		outbox.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, time.Minute, 2)
	collect := func() (map[string]int64, map[string]bool) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		sums := map[string]int64{}
		seen := map[string]bool{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				seen[m.Name] = true
				if s, ok := m.Data.(metricdata.Sum[int64]); ok {
					for _, dp := range s.DataPoints {
						topic, _ := dp.Attributes.Value(attribute.Key("outbox.topic"))
						sums[m.Name+"/"+topic.AsString()] += dp.Value
					}
				}
			}
		}
		return sums, seen
	}
	// The gauges report once the relay has read the backlog (at start).
	deadline := time.Now().Add(time.Minute)
	for _, seen := collect(); !seen["steadfast.outbox.backlog"]; _, seen = collect() {
		if time.Now().After(deadline) {
			t.Fatal("no backlog gauge")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for len(rec.Calls()) < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	_, seen := collect()
	if err := r.Stop(context.Background()); err != nil { // every attempt is counted
		t.Fatal(err)
	}
	sums, _ := collect()
	if sums["steadfast.outbox.deliveries/a"] != 2 || sums["steadfast.outbox.dead_letters/b"] != 1 || sums["steadfast.outbox.attempts/a"] != 2 || sums["steadfast.outbox.attempts/b"] != 1 {
		t.Errorf("counters %v", sums)
	}
	for _, name := range []string{"steadfast.outbox.publish.duration", "steadfast.outbox.backlog", "steadfast.outbox.oldest_pending_age", "steadfast.outbox.dead"} {
		if !seen[name] {
			t.Errorf("metric %s not reported", name)
		}
	}
}

// gatedStore holds its first claim until the gate opens, then claims for
// real and, like a database whose commit the client stopped waiting for,
// reports the caller's cancellation if there was one.
type gatedStore struct {
	outbox.Store
	entered, gate chan struct{}
	first         atomic.Bool
}

func (g *gatedStore) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	if g.first.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.gate
		var got []claimedMsg
		err := g.Store.Claim(context.Background(), req, func(d outbox.Delivery, c backend.Claim) { got = append(got, claimedMsg{d, c}) })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, c := range got {
			claimed(c.Delivery, c.Claim)
		}
		return err
	}
	return g.Store.Claim(ctx, req, claimed)
}

// claimedMsg is a message claimed directly from a store.
type claimedMsg struct {
	outbox.Delivery
	backend.Claim
}

// claimAll claims up to 1,000 messages for a minute.
func claimAll(t testing.TB, s outbox.Store) []claimedMsg {
	t.Helper()
	var out []claimedMsg
	if err := s.Claim(context.Background(), backend.ClaimRequest{Limit: 1000, Lease: time.Minute}, func(d outbox.Delivery, c backend.Claim) {
		out = append(out, claimedMsg{d, c})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStopDuringClaim: a claim in flight when Stop begins completes, and
// what it claimed is released at once, not left to its lease.
func TestStopDuringClaim(t *testing.T) {
	t.Parallel()
	db, s := newStore(t)
	enqueue(t, db, s, outbox.Message{Topic: "t", Payload: []byte("1")}, outbox.Message{Topic: "t", Payload: []byte("2")})
	g := &gatedStore{Store: s, entered: make(chan struct{}), gate: make(chan struct{})}
	rec := &outboxtest.Recorder{}
	r, err := outbox.NewRelay(g, rec, outbox.WithClaimers(1), outbox.WithLease(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stopped := make(chan error)
	go func() { stopped <- r.Stop(ctx) }()
	time.Sleep(50 * time.Millisecond) // Stop is under way
	close(g.gate)
	<-stopped
	c := claimAll(t, s)
	if len(c) != 2 {
		t.Fatalf("after Stop %d of 2 messages were claimable; the claim in flight was left to its hour-long lease", len(c))
	}
	for _, x := range c {
		if x.Attempt != 1 {
			t.Errorf("attempt %d after a release, want 1", x.Attempt)
		}
	}
	if n := len(rec.Calls()); n != 0 {
		t.Errorf("%d publishes after Stop began", n)
	}
}

// TestConcurrencyLimits: a claimed batch mixing destinations (here the
// topics) is published with at most WithDestinationConcurrency publishes in
// flight per destination, each reaching its limit, and a destination whose
// publishes hang does not hold up another of the same batch.
func TestConcurrencyLimits(t *testing.T) {
	t.Parallel()
	db, s := newStore(t)
	var msgs []outbox.Message
	for i := range 60 {
		topic := []string{"slow-a", "slow-b", "fast"}[i%3]
		msgs = append(msgs, outbox.Message{Topic: topic, Payload: []byte("x")})
	}
	enqueue(t, db, s, msgs...)
	const perTopic = 3
	release := make(chan struct{})
	var inA, inB, maxA, maxB, all, maxAll atomic.Int64
	raise := func(m *atomic.Int64, v int64) {
		for {
			old := m.Load()
			if v <= old || m.CompareAndSwap(old, v) {
				return
			}
		}
	}
	rec := &outboxtest.Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		raise(&maxAll, all.Add(1))
		defer all.Add(-1)
		switch d.Topic {
		case "slow-a":
			raise(&maxA, inA.Add(1))
			defer inA.Add(-1)
		case "slow-b":
			raise(&maxB, inB.Add(1))
			defer inB.Add(-1)
		default:
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	r, err := outbox.NewRelay(s, rec, outbox.WithBatchSize(100), outbox.WithConcurrency(8), outbox.WithDestinationConcurrency(perTopic))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every fast message goes through while both slow topics are stuck.
	rec.WaitFor(t, time.Minute, 20)
	for _, d := range rec.Delivered() {
		if d.Topic != "fast" {
			t.Fatalf("%s delivered before the slow topics were released", d.Topic)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for (inA.Load() < perTopic || inB.Load() < perTopic) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	rec.WaitFor(t, time.Minute, 60)
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, b := maxA.Load(), maxB.Load(); a != perTopic || b != perTopic {
		t.Errorf("most in flight per slow topic: %d and %d, want %d each", a, b, perTopic)
	}
	if m := maxAll.Load(); m > 8 {
		t.Errorf("%d publishes in flight at once, over the concurrency of 8", m)
	}
}
