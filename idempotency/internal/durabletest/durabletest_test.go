package durabletest_test

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestExactlyOnceMemory runs the replica workload on replicas sharing one
// MemoryStore, the reference the durable stores are held to.
func TestExactlyOnceMemory(t *testing.T) {
	t.Parallel()
	s, err := idempotency.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	var effects [1000]int
	events := durabletest.ExactlyOnce{
		Store: func(*testing.T, int) idempotency.Store { return s },
		Effect: func(r *http.Request, n int) error {
			if got := r.Header.Get("webhook-id"); got != durabletest.EventID(n) {
				t.Errorf("event %d arrived with webhook-id %q", n, got)
			}
			effects[n]++ // one handler per key at a time: no race
			return nil
		},
		Retry: durabletest.Retry{Codes: []int{http.StatusConflict}, Retries: 100, Pause: time.Millisecond},
	}.Run(t)
	for e := 0; e < events; e++ {
		if effects[e] != 1 {
			t.Errorf("event %d: effect applied %d times, want 1", e, effects[e])
		}
	}
}

func TestEvent(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 7, 1019} {
		r, err := http.NewRequest(http.MethodPost, "/webhooks", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("webhook-id", durabletest.EventID(n))
		if got := durabletest.Event(r); got != n {
			t.Errorf("Event(EventID(%d)) = %d", n, got)
		}
	}
}
