package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/retry"
	"github.com/steadfast-go/steadfast/webhook"
)

// provider is the payment provider: a charges API behind its own
// idempotency middleware (as real providers have), and a webhook sender
// that redelivers until our receiver answers 2xx.
type provider struct {
	s      *storm
	signer *webhook.Signer
	api    *httptest.Server
	hc     *http.Client

	mu          sync.Mutex
	charges     map[string]int // order → charges executed
	attempts    map[string]int // idempotency key → requests seen
	firstSeen   int
	outageUntil time.Time
	outageBegun bool

	parked sync.Map // idempotency keys of the charges the fallback parked
}

func newProvider(s *storm) (*provider, error) {
	signer, err := webhook.NewSigner(providerSecret)
	if err != nil {
		return nil, err
	}
	store, err := idempotency.NewMemoryStore()
	if err != nil {
		return nil, err
	}
	mw, err := idempotency.Middleware(store, idempotency.WithWait(3*time.Second), idempotency.WithLogger(s.log))
	if err != nil {
		return nil, err
	}
	p := &provider{
		s: s, signer: signer,
		charges:  map[string]int{},
		attempts: map[string]int{},
		hc:       &http.Client{Timeout: 10 * time.Second},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/charges", p.chargeChaos(mw(http.HandlerFunc(p.charge))))
	p.api = httptest.NewServer(mux)
	return p, nil
}

func (p *provider) close() { p.api.Close() }

// charge executes a charge: the side effect that must happen once per order.
func (p *provider) charge(w http.ResponseWriter, r *http.Request) {
	var body struct {
		OrderID string `json:"order_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.OrderID == "" {
		http.Error(w, "malformed charge", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.charges[body.OrderID]++
	p.mu.Unlock()
	p.s.c.charges.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"charge":"ch_%s"}`, body.OrderID)
}

// chargeChaos plays the provider's own failures, decided by the seed: an
// outage once 40%% of the orders were seen (long enough to open our
// breaker), answers lost after the charge was made, and slow answers that
// outlast our per-attempt timeout.
func (p *provider) chargeChaos(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		p.mu.Lock()
		p.attempts[key]++
		n := p.attempts[key]
		if n == 1 {
			p.firstSeen++
		}
		if !p.outageBegun && p.firstSeen >= max(2, p.s.cfg.orders*2/5) {
			p.outageBegun = true
			p.outageUntil = time.Now().Add(700 * time.Millisecond)
		}
		down := time.Now().Before(p.outageUntil)
		p.mu.Unlock()
		switch f := chance(p.s.cfg.seed, "charge", key); {
		case down:
			http.Error(w, "provider outage", http.StatusServiceUnavailable)
		case n == 1 && f < 0.10:
			next.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "response lost", http.StatusBadGateway)
		case n == 1 && f < 0.18:
			time.Sleep(300 * time.Millisecond)
			next.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// chargeClient is the order service's outbound client, composed outermost
// first: the caller's deadline → retry (backoff, per-attempt timeout,
// Retry-After, budget) → circuit breaker (with a fallback while open) → the
// base transport. The idempotency key makes the retried POST safe.
type chargeClient struct {
	p  *provider
	hc *http.Client
}

const deferredHeader = "Storm-Deferred"

func (p *provider) chargeClient() *chargeClient {
	c := &p.s.c
	base := countingTransport{next: http.DefaultTransport, n: &c.chargeAttempts}
	br, err := breaker.NewTransport(base,
		breaker.WithConsecutiveFailures(4),
		breaker.WithOpenDuration(400*time.Millisecond),
		breaker.WithLogger(p.s.log),
		breaker.WithStateHook(func(t breaker.Transition) {
			if t.To == breaker.Open {
				c.breakerOpenings.Add(1)
			}
		}),
		breaker.WithFallback(func(req *http.Request, err error) (*http.Response, error) {
			if !errors.Is(err, breaker.ErrOpen) {
				return nil, err // a timeout or a transport error: retry decides
			}
			// Fallback while the provider is down: park the charge; the
			// order service charges it again later, with the same key.
			if _, seen := p.parked.LoadOrStore(req.Header.Get("Idempotency-Key"), true); !seen {
				c.chargeFallbacks.Add(1)
			}
			return &http.Response{
				StatusCode: http.StatusAccepted, Status: "202 Accepted",
				Header:  http.Header{deferredHeader: {"1"}},
				Body:    io.NopCloser(strings.NewReader("")),
				Request: req, ProtoMajor: 1, ProtoMinor: 1,
			}, nil
		}),
	)
	if err != nil {
		panic(err) // constant options
	}
	policy, err := retry.New(
		retry.WithMaxAttempts(6),
		retry.WithBackoff(10*time.Millisecond, 150*time.Millisecond),
		retry.WithAttemptTimeout(200*time.Millisecond),
		retry.WithMaxRetryAfter(time.Second),
		retry.WithLogger(p.s.log),
		retry.WithOnRetry(func(context.Context, int, error, time.Duration) { c.chargeRetries.Add(1) }),
	)
	if err != nil {
		panic(err)
	}
	rt, err := retry.NewTransport(br, policy)
	if err != nil {
		panic(err)
	}
	return &chargeClient{p: p, hc: &http.Client{Transport: rt}}
}

// charge charges order id; false means the charge was parked (or failed)
// and must be tried again later.
func (c *chargeClient) charge(ctx context.Context, id string) bool {
	body := fmt.Sprintf(`{"order_id":%q}`, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.p.api.URL+"/v1/charges", strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "charge-"+id)
	resp, err := c.hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK
}

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// sendWebhooks delivers every wave of the plan to the receiver, six waves at
// a time, each copy redelivered until the receiver answers 2xx. With
// -postgres the receiver crashes when half of the waves were sent.
func (p *provider) sendWebhooks(ctx context.Context) error {
	waves := p.s.plan.waves
	next := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var cw sync.WaitGroup
				for copyIdx, ev := range waves[i] {
					cw.Add(1)
					go func() {
						defer cw.Done()
						if !p.deliver(ctx, ev, i, copyIdx) {
							failed.Add(1)
						}
					}()
				}
				cw.Wait()
			}
		}()
	}
	for i := range waves {
		if i == len(waves)/2 && p.s.postgres {
			go func() {
				if err := p.s.receiver.crash(ctx); err != nil {
					p.s.log.Error("receiver crash", "err", err)
				}
			}()
		}
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return ctx.Err()
}

// deliver sends one copy of ev until the receiver takes it; it reports
// false if the provider gave up.
func (p *provider) deliver(ctx context.Context, ev *event, wave, copyIdx int) bool {
	c := &p.s.c
	body := mustJSON(ev)
	for attempt := 1; attempt <= 60 && ctx.Err() == nil; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.s.receiver.url(), bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		p.signer.SetHeaders(req.Header, ev.ID, time.Now(), body)
		if attempt <= 2 {
			switch f := chance(p.s.cfg.seed, "deliver", ev.ID, wave, copyIdx, attempt); {
			case f < 0.05:
				req.Header.Set("Storm-Fault", "fail-before")
			case f < 0.10:
				req.Header.Set("Storm-Fault", "lose-response")
			}
		}
		c.deliveries.Add(1)
		resp, err := p.hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get(idempotency.ReplayedHeader) == "true" {
				c.replayed.Add(1)
			}
			if resp.StatusCode/100 == 2 {
				return true
			}
			if resp.StatusCode == http.StatusConflict {
				c.conflicts.Add(1)
			} else {
				c.deliveryErrors.Add(1)
			}
		} else {
			c.deliveryErrors.Add(1)
		}
		wait := time.Duration(min(200, 5<<min(attempt, 6))) * time.Millisecond
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
	return false
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
