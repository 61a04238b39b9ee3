package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/webhook"
)

// partner is the flaky endpoint our outbox relay delivers to. It verifies
// every signature, deduplicates on webhook-id, and checks per-key order:
// among the messages it accepts for the first time, an order's positions
// and versions only go up. It fails in the ways partners do: attempts that
// time out after the partner did the work, 503 with Retry-After, and an
// outage long enough to open the relay's breaker.
type partner struct {
	s   *storm
	srv *httptest.Server

	mu          sync.Mutex
	attempts    map[string]int
	seen        map[string]int
	lastPos     map[string]int64
	lastVer     map[string]int64
	violations  int
	outageBegun bool
	outageUntil time.Time
	crashAt     time.Time

	directCalls sync.WaitGroup // -no-outbox: calls after commit still running
}

func newPartner(s *storm) (*partner, error) {
	p := &partner{
		s:        s,
		attempts: map[string]int{}, seen: map[string]int{},
		lastPos: map[string]int64{}, lastVer: map[string]int64{},
	}
	verifier, err := webhook.NewVerifier([]string{partnerSecret})
	if err != nil {
		return nil, err
	}
	verify, err := webhook.NewMiddleware(verifier, webhook.WithLogger(s.log))
	if err != nil {
		return nil, err
	}
	p.srv = httptest.NewServer(verify(http.HandlerFunc(p.serve)))
	return p, nil
}

func (p *partner) url() string { return p.srv.URL + "/hooks/orders" }

func (p *partner) close() {
	p.directCalls.Wait()
	p.srv.Close()
}

func (p *partner) serve(w http.ResponseWriter, r *http.Request) {
	c := &p.s.c
	c.partnerAttempts.Add(1)
	id := r.Header.Get("webhook-id")
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	p.attempts[id]++
	n := p.attempts[id]
	if !p.outageBegun && c.partnerReceived.Load() >= int64(max(2, p.s.cfg.orders/2)) {
		p.outageBegun = true
		p.outageUntil = time.Now().Add(1200 * time.Millisecond)
	}
	down := time.Now().Before(p.outageUntil)
	p.mu.Unlock()
	if down {
		http.Error(w, "partner outage", http.StatusServiceUnavailable)
		return
	}
	if n <= 2 {
		switch f := chance(p.s.cfg.seed, "partner", id, n); {
		case f < 0.05:
			// The work is done, but the answer comes after the relay's
			// per-attempt timeout: the relay will deliver it again.
			time.Sleep(400 * time.Millisecond)
			p.accept(id, r.Header.Get(outbox.PositionHeader), body)
			return
		case f < 0.12:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
	}
	p.accept(id, r.Header.Get(outbox.PositionHeader), body)
	w.WriteHeader(http.StatusNoContent)
}

// accept records a delivery and checks the order of its key.
func (p *partner) accept(id, position string, body []byte) {
	c := &p.s.c
	var ev event
	_ = json.Unmarshal(body, &ev)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[id]++
	if p.seen[id] > 1 {
		c.partnerDups.Add(1)
		if !p.crashAt.IsZero() && time.Now().After(p.crashAt) {
			c.afterCrash.Add(1)
		}
		return
	}
	c.partnerReceived.Add(1)
	if position != "" {
		pos, err := strconv.ParseInt(position, 10, 64)
		if last, ok := p.lastPos[ev.OrderID]; err != nil || (ok && pos <= last) {
			p.violations++
		}
		p.lastPos[ev.OrderID] = pos
	}
	if last, ok := p.lastVer[ev.OrderID]; ok && ev.Version < last {
		p.violations++
	}
	p.lastVer[ev.OrderID] = ev.Version
}

func (p *partner) markCrash() {
	p.mu.Lock()
	p.crashAt = time.Now()
	p.mu.Unlock()
}

// direct is "call the partner after commit", what -no-outbox does instead
// of the outbox: a few attempts in the background, lost if the process dies
// first (the crash window, which the relay crash marks).
func (p *partner) direct(ev event) {
	p.directCalls.Add(1)
	go func() {
		defer p.directCalls.Done()
		body := mustJSON(ev)
		id := ev.ID
		signer, err := webhook.NewSigner(partnerSecret)
		if err != nil {
			p.s.log.Error("partner signer", "err", err)
			return
		}
		for attempt := 0; attempt < 5; attempt++ {
			p.mu.Lock()
			dead := !p.crashAt.IsZero() && time.Since(p.crashAt) < 500*time.Millisecond
			p.mu.Unlock()
			if dead {
				return // the process died between the commit and the call
			}
			req, err := http.NewRequest(http.MethodPost, p.url(), bytes.NewReader(body))
			if err != nil {
				p.s.log.Error("call the partner", "err", err)
				return
			}
			if err := signer.SetHeaders(req.Header, "msg_"+id, time.Now(), body); err != nil {
				p.s.log.Error("sign the partner's call", "err", err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

func (p *partner) report() (violations int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.violations
}
