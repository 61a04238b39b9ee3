package durabletest

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// Outage is the replica workload across a server outage: four replicas
// handle 300 webhook events (80 under -short), each delivered three times as
// in [ExactlyOnce] and retried on 409, 500 and 503 for up to two minutes.
// Once a third of them are through, the server goes down; 20 more events,
// sent for the first time during the outage, must get 503 and run no
// handler. The server then comes back, every delivery must end in 200, and
// the 20 outage events must go through.
type Outage struct {
	// Store returns replica i's store, each on a client or pool of its
	// own over the server.
	Store func(t *testing.T, i int) idempotency.Store
	// Options are added to each replica's middleware options (after the
	// webhook-id key source, a 2s lease, a 1s store timeout and a logger
	// that notes the events whose response could not be stored).
	Options []idempotency.Option
	// Effect, if non-nil, is the handler's side effect.
	Effect Effect
	// Down takes the server down (stop or kill); Up starts it again.
	Down, Up func(t testing.TB)
	// CheckEffects, if non-nil, checks the committed effects of all the
	// events, whose number it is given, instead of checking that only
	// events in flight at the outage ran twice.
	CheckEffects func(t *testing.T, events int)
}

// OutageResult is what an [Outage] run reports.
type OutageResult struct {
	// Events is the number of events, the outage events included.
	Events int
	// Unavailable is the number of 503 answers seen by deliveries.
	Unavailable int64
	// InFlight is the number of events in flight at the outage or run
	// during it.
	InFlight int
	// Doubles is the number of events whose handler ran more than once.
	Doubles int
	// Unstored is the number of events whose response the middleware could
	// not store (a store call outlasted the store timeout, or failed).
	Unstored int
}

// Run runs the workload and fails t unless every event ran, only events in
// flight at the outage, or whose response the middleware could not store
// (it logs that a retry may run them again), ran twice (or CheckEffects
// passes) and some delivery saw a 503.
func (o Outage) Run(t *testing.T) OutageResult {
	t.Helper()
	events := 300
	if testing.Short() {
		events = 80
	}
	var (
		runs     = make(runs, events+20)
		inflight sync.Map // request -> event, while the middleware handles it
		down     atomic.Bool
		atDown   sync.Map // events whose handler was running when the server went down, or ran during the outage
		unstored sync.Map // events whose response the middleware could not store, outside the outage too
	)
	rs := &replicas{retry: Retry{
		Codes:  []int{http.StatusServiceUnavailable, http.StatusConflict, http.StatusInternalServerError},
		Within: 2 * time.Minute,
		Pause:  5 * time.Millisecond,
	}}
	opts := append([]idempotency.Option{
		idempotency.WithLease(2 * time.Second),
		idempotency.WithStoreTimeout(time.Second),
		idempotency.WithLogger(slog.New(unstoredLog{&unstored})),
	}, o.Options...)
	onRun := func(n int) {
		if down.Load() {
			atDown.Store(n, true)
		}
	}
	for i := 0; i < replicaCount; i++ {
		mw, err := middleware(o.Store(t, i), opts)
		if err != nil {
			t.Fatal(err)
		}
		// A request is in flight from its claim to its completion, both
		// inside the middleware: mark it around the whole middleware.
		// The pause keeps some handlers in flight.
		rs.handlers = append(rs.handlers, inFlight(&inflight, mw(runs.handler(onRun, o.Effect, time.Millisecond))))
	}

	p := startPool(events, rs.deliver)
	// Wait until a third of the events are through, then stop the server.
	for p.done.Load() < int32(events/3) {
		time.Sleep(5 * time.Millisecond)
	}
	down.Store(true)
	inflight.Range(func(_, e any) bool { atDown.Store(e, true); return true })
	o.Down(t)
	// Events sent for the first time during the outage: 503, no handler.
	for e := events; e < events+20; e++ {
		code, body := rs.post(e, e)
		if code != http.StatusServiceUnavailable {
			t.Errorf("event %d during the outage: %d %s, want 503", e, code, body)
		}
		if runs[e].Load() != 0 {
			t.Errorf("event %d ran during the outage", e)
		}
	}
	time.Sleep(300 * time.Millisecond)
	o.Up(t)
	down.Store(false)

	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	// The outage events go through now.
	for e := events; e < events+20; e++ {
		if err := rs.deliver(e, e); err != nil {
			t.Fatal(err)
		}
	}
	var doubles []int
	for e := range runs {
		switch n := runs[e].Load(); {
		case n == 0:
			t.Fatalf("event %d never ran", e)
		case n > 1:
			doubles = append(doubles, e)
		}
	}
	inFlightAtOutage := 0
	atDown.Range(func(any, any) bool { inFlightAtOutage++; return true })
	if o.CheckEffects != nil {
		o.CheckEffects(t, events+20)
	} else {
		for _, e := range doubles {
			_, atOutage := atDown.Load(e)
			_, failed := unstored.Load(e)
			if !atOutage && !failed {
				t.Errorf("event %d ran %d times but was not in flight at the outage, nor was its response left unstored", e, runs[e].Load())
			}
		}
	}
	if rs.unavailable.Load() == 0 {
		t.Error("no delivery saw 503 during the outage")
	}
	unstoredCount := 0
	unstored.Range(func(any, any) bool { unstoredCount++; return true })
	return OutageResult{Events: events + 20, Unavailable: rs.unavailable.Load(), InFlight: inFlightAtOutage, Doubles: len(doubles), Unstored: unstoredCount}
}

// unstoredLog is the replicas' log handler: it records in m the events
// whose response the middleware could not store ("a retry may run it
// again", it logs), as on a loaded machine a store call can outlast the
// store timeout while the server is up; it discards everything else.
type unstoredLog struct{ m *sync.Map }

func (unstoredLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h unstoredLog) Handle(_ context.Context, r slog.Record) error {
	if !strings.Contains(r.Message, "not stored") {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "key" {
			return true
		}
		k := a.Value.String()
		if i := strings.LastIndex(k, "evt_"); i >= 0 {
			if n, err := strconv.Atoi(k[i+len("evt_"):]); err == nil {
				h.m.Store(n, true)
			}
		}
		return false
	})
	return nil
}

func (h unstoredLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h unstoredLog) WithGroup(string) slog.Handler      { return h }

// inFlight records each request's event in m while next handles it.
func inFlight(m *sync.Map, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Store(r, Event(r))
		defer m.Delete(r)
		next.ServeHTTP(w, r)
	})
}
