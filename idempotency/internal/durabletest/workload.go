package durabletest

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// header carries each webhook event's idempotency key, "evt_<n>".
const header = "webhook-id"

// replicaCount is the number of replicas in every workload.
const replicaCount = 4

// EventID returns the webhook-id of event n.
func EventID(n int) string { return fmt.Sprintf("evt_%d", n) }

// Event returns the event number of r, read from its webhook-id header.
func Event(r *http.Request) int {
	var n int
	fmt.Sscan(strings.TrimPrefix(r.Header.Get(header), "evt_"), &n)
	return n
}

// Effect is a handler's side effect for event n, run after the run is
// counted and before the answer; an error answers 500 with its text.
type Effect func(r *http.Request, n int) error

// runs counts each event's handler runs.
type runs []atomic.Int32

// handler returns the webhook handler: it counts the event's run (after
// calling onRun, if non-nil), applies effect (if non-nil), sleeps pause and
// answers "handled <n>".
func (rs runs) handler(onRun func(n int), effect Effect, pause time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := Event(r)
		if onRun != nil {
			onRun(n)
		}
		rs[n].Add(1)
		if effect != nil {
			if err := effect(r, n); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		if pause > 0 {
			time.Sleep(pause)
		}
		fmt.Fprintf(w, "handled %d", n)
	})
}

// Retry says which answers a delivery tries again, on the next replica,
// and for how long.
type Retry struct {
	// Codes are the retried statuses.
	Codes []int
	// Retries is the most retries of one delivery; 0 means no limit.
	Retries int
	// Within ends the retries of a delivery this long after its first
	// attempt; 0 means no limit.
	Within time.Duration
	// Pause is the sleep before each retry.
	Pause time.Duration
}

// replicas are webhook receivers behind idempotency.Middleware.
type replicas struct {
	handlers    []http.Handler
	retry       Retry
	unavailable atomic.Int64 // 503 answers seen by deliver
}

// post sends event to replica (modulo the number of replicas) and returns
// the status and body.
func (rs *replicas) post(event, replica int) (int, string) {
	req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(fmt.Sprintf(`{"event":%d}`, event)))
	req.Header.Set(header, EventID(event))
	rec := httptest.NewRecorder()
	rs.handlers[replica%len(rs.handlers)].ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// deliver posts event, starting at replica and moving to the next one on
// each retry, until it is answered 200 with the event's body; it counts
// the 503 answers.
func (rs *replicas) deliver(event, replica int) error {
	var deadline time.Time
	if rs.retry.Within > 0 {
		deadline = time.Now().Add(rs.retry.Within)
	}
	for attempt := 0; ; attempt++ {
		code, body := rs.post(event, replica+attempt)
		switch {
		case code == http.StatusOK && body == fmt.Sprintf("handled %d", event):
			return nil
		case slices.Contains(rs.retry.Codes, code):
			if code == http.StatusServiceUnavailable {
				rs.unavailable.Add(1)
			}
			if (rs.retry.Retries > 0 && attempt >= rs.retry.Retries) || (!deadline.IsZero() && time.Now().After(deadline)) {
				return fmt.Errorf("event %d: still %d after %d attempts: %s", event, code, attempt+1, body)
			}
			time.Sleep(rs.retry.Pause)
		default:
			return fmt.Errorf("event %d: %d %s", event, code, body)
		}
	}
}

// pool delivers events from eight workers, each event three times: twice
// concurrently to two neighbouring replicas, picked at random, then once
// more to the next one (a later redelivery).
type pool struct {
	done atomic.Int32
	errs chan error
	wg   sync.WaitGroup
}

// startPool starts delivering events [0, events) with deliver.
func startPool(events int, deliver func(event, replica int) error) *pool {
	p := &pool{errs: make(chan error, 3*events)}
	work := make(chan int)
	for w := 0; w < 8; w++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for e := range work {
				first := rand.IntN(replicaCount)
				var pair sync.WaitGroup
				pair.Add(2)
				go func() { defer pair.Done(); p.errs <- deliver(e, first) }()
				go func() { defer pair.Done(); p.errs <- deliver(e, first+1) }()
				pair.Wait()
				p.errs <- deliver(e, first+2)
				p.done.Add(1)
			}
		}()
	}
	go func() {
		for e := 0; e < events; e++ {
			work <- e
		}
		close(work)
	}()
	return p
}

// wait waits for every delivery and returns the first error among them.
func (p *pool) wait() error {
	p.wg.Wait()
	close(p.errs)
	var first error
	for err := range p.errs {
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// middleware returns the middleware of a replica on s.
func middleware(s idempotency.Store, opts []idempotency.Option) (func(http.Handler) http.Handler, error) {
	return idempotency.Middleware(s, append([]idempotency.Option{idempotency.WithKeySource(idempotency.HeaderKey(header))}, opts...)...)
}
