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
	"strconv"
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
// idempotency middleware (as real providers have), a webhook sender that
// redelivers until our receiver answers 2xx (but drops a share of the events
// for good), and the list of its events (GET /v1/events), which shows every
// event, a little late now and then, and answers 429 or 503 now and then.
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

	// The events list: every event in the order the provider created it.
	log         []*logEntry
	logIndex    map[string]int // event id → index in log
	sendingDone bool           // every wave was sent
	listCalls   int            // GET /v1/events requests
	completeAt  int            // the first listCalls that returned the whole list's end after sendingDone

	parked sync.Map // idempotency keys of the charges the fallback parked
}

// logEntry is an event of the list.
type logEntry struct {
	id      string
	body    []byte // the JSON of the event, the webhook's body too
	created time.Time
	lateBy  int // the event shows in the list once this many later events exist (or after a second)
}

// maxLateness is how many places, at most, an event shows late in the list:
// the receiver's poller re-reads more than that behind its cursor.
const maxLateness = 20

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
		logIndex: map[string]int{},
		hc:       &http.Client{Timeout: 10 * time.Second},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/charges", p.chargeChaos(mw(http.HandlerFunc(p.charge))))
	mux.HandleFunc("GET /v1/events", p.listEvents)
	p.api = httptest.NewServer(mux)
	return p, nil
}

// eventsURL is the address of the provider's events list.
func (p *provider) eventsURL() string { return p.api.URL + "/v1/events" }

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

func (p *provider) chargeClient() (*chargeClient, error) {
	c := &p.s.c
	base := countingTransport{next: http.DefaultTransport, n: &c.chargeAttempts}
	br, err := breaker.NewTransport(base, append(p.s.breakerHooks(),
		breaker.WithConsecutiveFailures(4),
		breaker.WithOpenDuration(400*time.Millisecond),
		breaker.WithLogger(p.s.log),
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
	)...)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	rt, err := retry.NewTransport(br, policy)
	if err != nil {
		return nil, err
	}
	return &chargeClient{p: p, hc: &http.Client{Transport: rt}}, nil
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
// a time, each copy redelivered until the receiver answers 2xx. An event is
// created (it enters the events list) when its first wave goes; a dropped
// event is created and never sent. With -postgres the receiver crashes when
// half of the waves were sent.
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
					body := p.create(ev)
					if p.s.plan.dropped[ev.ID] {
						continue
					}
					cw.Add(1)
					go func() {
						defer cw.Done()
						if !p.deliver(ctx, ev.ID, body, i, copyIdx) {
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
			wg.Add(1)
			go func() {
				defer wg.Done()
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
	p.mu.Lock()
	p.sendingDone = true
	p.mu.Unlock()
	if n := failed.Load(); n > 0 && ctx.Err() == nil {
		p.s.log.Warn("provider gave up on deliveries", "copies", n)
	}
	return ctx.Err()
}

// create enters ev in the events list, the first time, and returns its JSON.
func (p *provider) create(ev *event) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.logIndex[ev.ID]; ok {
		return p.log[i].body
	}
	now := time.Now()
	e := *ev
	e.Object, e.Created = "event", now.Unix()
	entry := &logEntry{id: ev.ID, body: mustJSON(e), created: now}
	// A fifth of the events show in the list late: after up to
	// maxLateness later ones.
	if f := chance(p.s.cfg.seed, "late", ev.ID); f < 0.2 {
		entry.lateBy = 1 + int(f/0.2*maxLateness)
	}
	p.logIndex[ev.ID] = len(p.log)
	p.log = append(p.log, entry)
	if p.s.plan.dropped[ev.ID] {
		p.s.c.dropped.Add(1)
	}
	return entry.body
}

// visible reports whether the list shows the event at index i yet; p.mu is
// held.
func (p *provider) visible(i int) bool {
	e := p.log[i]
	return len(p.log)-1-i >= e.lateBy || time.Since(e.created) >= time.Second
}

// listEvents serves GET /v1/events?limit=N[&starting_after=ID], Stripe's
// shape, oldest first: {"object":"list","data":[...],"has_more":bool}. It
// is eventually consistent (an event may show after later ones, see
// create), and now and then, decided by the seed, it answers 429 with
// Retry-After: 1, or 503.
func (p *provider) listEvents(w http.ResponseWriter, r *http.Request) {
	c := &p.s.c
	limit := 10
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			http.Error(w, "limit must be 1 to 100", http.StatusBadRequest)
			return
		}
		limit = n
	}
	p.mu.Lock()
	p.listCalls++
	call := p.listCalls
	switch f := chance(p.s.cfg.seed, "list", call); {
	case f < 0.08:
		p.mu.Unlock()
		c.list429.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rate limited", http.StatusTooManyRequests)
		return
	case f < 0.12:
		p.mu.Unlock()
		c.list503.Add(1)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	start := 0
	if after := r.URL.Query().Get("starting_after"); after != "" {
		i, ok := p.logIndex[after]
		if !ok || !p.visible(i) {
			p.mu.Unlock()
			http.Error(w, "unknown starting_after", http.StatusBadRequest)
			return
		}
		start = i + 1
	}
	var data []json.RawMessage
	more := false
	for i := start; i < len(p.log); i++ {
		if !p.visible(i) {
			continue
		}
		if len(data) == limit {
			more = true
			break
		}
		data = append(data, p.log[i].body)
	}
	if p.completeAt == 0 && p.sendingDone && !more {
		all := true
		for i := range p.log {
			all = all && p.visible(i)
		}
		if all {
			p.completeAt = call
		}
	}
	p.mu.Unlock()
	c.listPages.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Object  string            `json:"object"`
		URL     string            `json:"url"`
		Data    []json.RawMessage `json:"data"`
		HasMore bool              `json:"has_more"`
	}{"list", "/v1/events", append([]json.RawMessage{}, data...), more})
}

// listedAll reports whether a reader of the list has read its end, with
// every event shown, after the last wave was sent, and has asked again
// since: the page that held the end was applied (the next request of a
// poller comes after its page committed).
func (p *provider) listedAll() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.completeAt > 0 && p.listCalls > p.completeAt
}

// deliver sends one copy of an event until the receiver takes it; it
// reports false if the provider gave up.
func (p *provider) deliver(ctx context.Context, id string, body []byte, wave, copyIdx int) bool {
	c := &p.s.c
	for attempt := 1; attempt <= 60 && ctx.Err() == nil; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.s.receiver.url(), bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		if err := p.signer.SetHeaders(req.Header, id, time.Now(), body); err != nil {
			p.s.log.Error("sign webhook", "event", id, "err", err)
			return false
		}
		if attempt <= 2 {
			switch f := chance(p.s.cfg.seed, "deliver", id, wave, copyIdx, attempt); {
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
