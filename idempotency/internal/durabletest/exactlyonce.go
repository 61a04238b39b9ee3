package durabletest

import (
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// ExactlyOnce is the replica workload without failures: four replicas
// receive 1,000 distinct webhook events (150 under -short), each delivered
// three times, two of the three concurrently to different replicas.
type ExactlyOnce struct {
	// Store returns replica i's store, each on a client or pool of its
	// own over the shared backend.
	Store func(t *testing.T, i int) idempotency.Store
	// Options are added to each replica's middleware options (after the
	// webhook-id key source and a 30s WithWait).
	Options []idempotency.Option
	// Effect, if non-nil, is the handler's side effect.
	Effect Effect
	// Retry says which answers a delivery retries.
	Retry Retry
}

// Run runs the workload and fails t unless every delivery ends in 200 with
// the first run's body and each event's handler ran exactly once. It
// returns the number of events.
func (c ExactlyOnce) Run(t *testing.T) int {
	t.Helper()
	events := 1000
	if testing.Short() {
		events = 150
	}
	runs := make(runs, events)
	rs := &replicas{retry: c.Retry}
	opts := append([]idempotency.Option{idempotency.WithWait(30 * time.Second)}, c.Options...)
	for i := 0; i < replicaCount; i++ {
		mw, err := middleware(c.Store(t, i), opts)
		if err != nil {
			t.Fatal(err)
		}
		rs.handlers = append(rs.handlers, mw(runs.handler(nil, c.Effect, 0)))
	}
	if err := startPool(events, rs.deliver).wait(); err != nil {
		t.Fatal(err)
	}
	for e := range runs {
		if n := runs[e].Load(); n != 1 {
			t.Fatalf("event %d: handler ran %d times, want 1", e, n)
		}
	}
	return events
}
