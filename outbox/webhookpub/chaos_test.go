package webhookpub_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/webhook"
)

// chaos sits in front of a receiver and misbehaves on purpose: it refuses
// some requests before anything runs, loses the response of others after
// the handler ran (the connection is dropped), and answers others only
// after the sender gave up waiting.
type chaos struct {
	next    http.Handler
	mu      sync.Mutex
	rnd     *rand.Rand
	refused atomic.Int64
	dropped atomic.Int64
	late    atomic.Int64
	lateBy  time.Duration
}

func (c *chaos) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	roll := c.rnd.IntN(100)
	c.mu.Unlock()
	switch {
	case roll < 15:
		c.refused.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	case roll < 25:
		c.dropped.Add(1)
		c.next.ServeHTTP(httptest.NewRecorder(), r)
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	case roll < 35:
		c.late.Add(1)
		rec := httptest.NewRecorder()
		c.next.ServeHTTP(rec, r)
		time.Sleep(c.lateBy) // the sender's attempt times out meanwhile
		w.WriteHeader(rec.Code)
	default:
		c.next.ServeHTTP(w, r)
	}
}

// TestChaosEachEventHandledOnce sends events through the relay to a
// receiver that verifies signatures and deduplicates on webhook-id, while
// the receiver's front refuses, drops and delays requests: every event is
// delivered, and the receiver's handler runs exactly once for each.
func TestChaosEachEventHandledOnce(t *testing.T) {
	t.Parallel()
	n := 200
	if testing.Short() {
		n = 40
	}
	var mu sync.Mutex
	handled := map[string]int{}
	business := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		handled[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	v, err := webhook.NewVerifier([]string{secret})
	if err != nil {
		t.Fatal(err)
	}
	verify, err := webhook.NewMiddleware(v)
	if err != nil {
		t.Fatal(err)
	}
	store, err := idempotency.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	once, err := idempotency.Middleware(store, idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")))
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 100 * time.Millisecond
	front := &chaos{next: verify(once(business)), rnd: rand.New(rand.NewPCG(7, 11)), lateBy: 2 * timeout}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)

	// The failure rate trips the endpoint's breaker now and then: a short
	// open time makes that a short pause rather than a stalled test.
	var opened atomic.Int64
	pub := newPublisher(t, srv.URL, webhookpub.WithAttemptTimeout(timeout), webhookpub.WithBreaker(
		breaker.WithOpenDuration(20*time.Millisecond),
		breaker.WithLogger(slog.New(slog.DiscardHandler)),
		breaker.WithStateHook(func(tr breaker.Transition) {
			if tr.To == breaker.Open {
				opened.Add(1)
			}
		})))
	ob := pubtest.NewOutbox(t)
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "partner", Payload: []byte(fmt.Sprintf(`{"event":%d}`, i))}
	}
	ob.Enqueue(t, msgs...)
	pubtest.StartRelay(t, ob.Store, pub,
		outbox.WithBackoff(5*time.Millisecond, 50*time.Millisecond), outbox.WithMaxRetryAfter(50*time.Millisecond),
		outbox.WithPollInterval(10*time.Millisecond), outbox.WithMaxAttempts(1000), outbox.WithConcurrency(16))

	pubtest.Until(t, "every event delivered", 0, func() bool {
		st, err := ob.Store.Stats(context.Background())
		return err == nil && st.Pending == 0
	})
	st, err := ob.Store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Dead != 0 {
		dead, _ := ob.Store.ListDead(context.Background(), "", 0, 5)
		t.Fatalf("%d dead letters, e.g. %+v", st.Dead, dead)
	}
	if front.refused.Load() == 0 || front.dropped.Load() == 0 || front.late.Load() == 0 {
		t.Fatalf("chaos did not happen (refused %d, dropped %d, late %d): the test tests nothing",
			front.refused.Load(), front.dropped.Load(), front.late.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != n {
		t.Errorf("handler saw %d distinct events, want %d", len(handled), n)
	}
	for id, c := range handled {
		if c != 1 {
			t.Errorf("event %s handled %d times, want once", id, c)
		}
	}
	t.Logf("%d events: %d refused, %d responses dropped, %d answered late, breaker opened %d times; each handled once",
		n, front.refused.Load(), front.dropped.Load(), front.late.Load(), opened.Load())
}
