package webhook_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/webhook"
)

// receiver is a webhook endpoint as the package documentation recommends:
// verification in front of the idempotency middleware keyed by webhook-id.
func receiver(t *testing.T, now func() time.Time, handler http.Handler, idemOpts ...idempotency.Option) http.Handler {
	t.Helper()
	v, err := webhook.NewVerifier([]string{vecSecret}, webhook.WithClock(now))
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
	once, err := idempotency.Middleware(store, append([]idempotency.Option{idempotency.WithKeySource(idempotency.HeaderKey("webhook-id"))}, idemOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return verify(once(handler))
}

func TestVerificationInFrontOfIdempotency(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var runs atomic.Int32
	h := receiver(t, clock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte("booked"))
	}))
	signer := mustSigner(t, vecSecret)
	body := []byte(`{"type":"invoice.paid","id":"evt_1"}`)

	// The sender delivers the event three times, each signed afresh.
	for i := 0; i < 3; i++ {
		r := httptest.NewRequest(http.MethodPost, "/webhooks", bytes.NewReader(body))
		mustSetHeaders(t, signer, r.Header, "msg_evt_1", clock(), body)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusAccepted || rec.Body.String() != "booked" {
			t.Fatalf("delivery %d: %d %q, want 202 booked", i+1, rec.Code, rec.Body)
		}
		if i > 0 && rec.Header().Get("Idempotent-Replayed") != "true" {
			t.Errorf("delivery %d was not a replay", i+1)
		}
		mu.Lock()
		now = now.Add(30 * time.Second)
		mu.Unlock()
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times for one event delivered 3 times, want 1", n)
	}

	// A forged delivery, under a fresh id or the id of the real one, never
	// reaches the idempotency layer or the handler.
	for _, id := range []string{"msg_evt_2", "msg_evt_1"} {
		r := httptest.NewRequest(http.MethodPost, "/webhooks", bytes.NewReader([]byte(`{"type":"invoice.paid","id":"forged"}`)))
		mustSetHeaders(t, signer, r.Header, id, clock(), body) // signed for another body
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("forged delivery with id %s: %d, want 401", id, rec.Code)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1: a forged delivery reached it", n)
	}
}

func TestConcurrentRedeliveriesRunOnce(t *testing.T) {
	t.Parallel()
	now := func() time.Time { return time.Unix(1_700_000_000, 0) }
	var runs atomic.Int32
	release := make(chan struct{})
	h := receiver(t, now, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		<-release
		w.WriteHeader(http.StatusOK)
	}), idempotency.WithWait(time.Minute))
	signer := mustSigner(t, vecSecret)
	body := []byte(`{"id":"evt_9"}`)
	var wg sync.WaitGroup
	codes := make([]int, 3)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := httptest.NewRequest(http.MethodPost, "/webhooks", bytes.NewReader(body))
			mustSetHeaders(t, signer, r.Header, "msg_evt_9", now(), body)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			codes[i] = rec.Code
		}()
	}
	// Let the first one in, then finish it.
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("delivery %d answered %d, want 200 (run or replay)", i, c)
		}
	}
}
