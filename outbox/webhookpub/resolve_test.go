package webhookpub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/retry"
	"github.com/steadfast-go/steadfast/webhook"
)

// Secrets of at least 24 bytes, as package webhook requires.
const (
	secretA   = "whsec_dGVuYW50LWEtc2VjcmV0LTAxMjM0NTY3ODkwMTI="
	secretB   = "whsec_dGVuYW50LWItc2VjcmV0LTAxMjM0NTY3ODkwMTI="
	secretNew = "whsec_cm90YXRlZC1zZWNyZXQtMDEyMzQ1Njc4OTAxMjM="
)

// tenants is a table of subscriptions that a resolver reads, and counts
// its lookups.
type tenants struct {
	mu      sync.Mutex
	subs    map[string]webhookpub.Endpoint
	lookups map[string]int
	fail    error
}

func (tt *tenants) resolve(_ context.Context, destination string) (webhookpub.Endpoint, error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.lookups == nil {
		tt.lookups = map[string]int{}
	}
	tt.lookups[destination]++
	if tt.fail != nil {
		return webhookpub.Endpoint{}, tt.fail
	}
	ep, ok := tt.subs[destination]
	if !ok {
		return webhookpub.Endpoint{}, fmt.Errorf("no subscription %q: %w", destination, webhookpub.ErrUnknownEndpoint)
	}
	return ep, nil
}

func (tt *tenants) set(destination string, ep webhookpub.Endpoint) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.subs[destination] = ep
}

func (tt *tenants) looked(destination string) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.lookups[destination]
}

// to is a delivery of the topic "invoice.paid" to destination.
func to(destination, id string) outbox.Delivery {
	d := delivery(id)
	d.Topic = "invoice.paid"
	d.Destination = destination
	return d
}

func verifies(t *testing.T, r request, secrets ...string) bool {
	t.Helper()
	v, err := webhook.NewVerifier(secrets, webhook.WithTolerance(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return v.Verify(r.header, r.body) == nil
}

// TestResolverEndpointsPerDestination: destinations outside the static map
// are resolved, each to its own URL and secret; a destination the resolver
// does not know is dead-lettered; a failing resolver is retried.
func TestResolverEndpointsPerDestination(t *testing.T) {
	t.Parallel()
	a, b, static := newEndpoint(t, status(200)), newEndpoint(t, status(200)), newEndpoint(t, status(200))
	tt := &tenants{subs: map[string]webhookpub.Endpoint{
		"tenant-a": {URL: a.srv.URL, Secrets: []string{secretA}},
		"tenant-b": {URL: b.srv.URL, Secrets: []string{secretB}, Headers: map[string]string{"X-Tenant": "b"}},
	}}
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{"partner": {URL: static.srv.URL, Secrets: []string{secret}}},
		loopback, webhookpub.WithResolver(tt.resolve))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, d := range []outbox.Delivery{to("tenant-a", "0190f5e2-0000-7000-8000-0000000000a1"), to("tenant-b", "0190f5e2-0000-7000-8000-0000000000b1"), to("partner", "0190f5e2-0000-7000-8000-0000000000c1")} {
		if err := p.Publish(ctx, d); err != nil {
			t.Fatalf("Publish to %s: %v", d.Destination, err)
		}
	}
	if !verifies(t, a.seen()[0], secretA) || verifies(t, a.seen()[0], secretB) {
		t.Error("tenant-a's delivery is not signed with tenant-a's secret alone")
	}
	if r := b.seen()[0]; !verifies(t, r, secretB) || r.header.Get("X-Tenant") != "b" {
		t.Error("tenant-b's delivery is not signed with its secret, or lacks its header")
	}
	if !verifies(t, static.seen()[0], secret) || tt.looked("partner") != 0 {
		t.Error("the static endpoint was not used as it is")
	}

	err = p.Publish(ctx, to("tenant-z", "0190f5e2-0000-7000-8000-0000000000d1"))
	if !errors.Is(err, webhookpub.ErrUnknownEndpoint) || !retry.IsPermanent(err) {
		t.Errorf("unknown destination: %v, want a permanent ErrUnknownEndpoint", err)
	}
	tt.mu.Lock()
	tt.fail = errors.New("subscriptions table unreachable")
	tt.mu.Unlock()
	err = p.Publish(ctx, to("tenant-c", "0190f5e2-0000-7000-8000-0000000000e1"))
	if err == nil || retry.IsPermanent(err) || errors.Is(err, outbox.ErrPaused) {
		t.Errorf("resolver failure: %v, want a retryable error", err)
	}
}

// TestResolverCacheIsBounded: answers are cached for the TTL, concurrent
// misses look up once, and at most the cache's size of destinations are
// kept.
func TestResolverCacheIsBounded(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	tt := &tenants{subs: map[string]webhookpub.Endpoint{}}
	for i := range 3 {
		tt.subs[fmt.Sprintf("t%d", i)] = webhookpub.Endpoint{URL: ep.srv.URL, Secrets: []string{secretA}}
	}
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p, err := webhookpub.New(nil, loopback, webhookpub.WithResolver(tt.resolve), webhookpub.WithResolverCache(2, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	webhookpub.SetClock(p, clock)
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Publish(ctx, to("t0", "0190f5e2-0000-7000-8000-0000000000a2")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// One lookup; two at most, when a publish that missed the cache just
	// before the first lookup stored its answer started its own. More means
	// concurrent misses each looked up.
	if n := tt.looked("t0"); n < 1 || n > 2 {
		t.Errorf("20 concurrent publishes looked t0 up %d times, want 1", n)
	}
	before := tt.looked("t0")
	for range 5 {
		_ = p.Publish(ctx, to("t0", "0190f5e2-0000-7000-8000-0000000000a2"))
	}
	if n := tt.looked("t0"); n != before {
		t.Errorf("cached destination looked up %d more times", n-before)
	}
	// t1 and t2 fill the cache of 2: t0, the least recently used, goes.
	_ = p.Publish(ctx, to("t1", "0190f5e2-0000-7000-8000-0000000000a2"))
	_ = p.Publish(ctx, to("t2", "0190f5e2-0000-7000-8000-0000000000a2"))
	_ = p.Publish(ctx, to("t0", "0190f5e2-0000-7000-8000-0000000000a2"))
	if n := tt.looked("t0"); n != before+1 {
		t.Errorf("t0 looked up %d more times after being evicted, want 1", n-before)
	}
	// After the TTL, every destination is looked up again.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	_ = p.Publish(ctx, to("t0", "0190f5e2-0000-7000-8000-0000000000a2"))
	if n := tt.looked("t0"); n != before+2 {
		t.Errorf("t0 looked up %d more times after its TTL, want 2", n-before)
	}
}

// TestBreakerAndPausePerDestination: a failing tenant trips its own breaker
// and is paused; another tenant on the same publisher is delivered
// meanwhile. A 410 pauses only the destination that answered it.
func TestBreakerAndPausePerDestination(t *testing.T) {
	t.Parallel()
	down, gone, up := newEndpoint(t, status(500)), newEndpoint(t, status(410)), newEndpoint(t, status(200))
	tt := &tenants{subs: map[string]webhookpub.Endpoint{
		"down": {URL: down.srv.URL, Secrets: []string{secretA}},
		"gone": {URL: gone.srv.URL, Secrets: []string{secretA}},
		"up":   {URL: up.srv.URL, Secrets: []string{secretB}},
	}}
	p, err := webhookpub.New(nil, loopback, webhookpub.WithResolver(tt.resolve),
		webhookpub.WithBreaker(breaker.WithConsecutiveFailures(2), breaker.WithOpenDuration(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		_ = p.Publish(ctx, to("down", "0190f5e2-0000-7000-8000-0000000000a3"))
	}
	if err := p.Publish(ctx, to("down", "0190f5e2-0000-7000-8000-0000000000a3")); !errors.Is(err, outbox.ErrPaused) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("third publish to the failing destination = %v, want paused by its open breaker", err)
	}
	if err := p.Publish(ctx, to("gone", "0190f5e2-0000-7000-8000-0000000000a4")); !errors.Is(err, outbox.ErrPaused) {
		t.Fatalf("publish to the gone destination = %v, want paused", err)
	}
	for i := range 3 {
		if err := p.Publish(ctx, to("up", "0190f5e2-0000-7000-8000-0000000000a5")); err != nil {
			t.Fatalf("publish %d to the healthy destination: %v", i, err)
		}
	}
	if n := len(down.seen()); n != 2 {
		t.Errorf("failing destination saw %d requests, want 2", n)
	}
}

// TestSecretRotation: while an endpoint has the old and the new secret, each
// delivery carries both signatures, so a receiver still on the old secret
// and one already on the new both verify it. A resolver's rotation is picked
// up when its cached answer expires.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	tt := &tenants{subs: map[string]webhookpub.Endpoint{"t": {URL: ep.srv.URL, Secrets: []string{secretA}}}}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); now = now.Add(2 * time.Minute); mu.Unlock() }
	p, err := webhookpub.New(nil, loopback, webhookpub.WithResolver(tt.resolve), webhookpub.WithResolverCache(10, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	webhookpub.SetClock(p, clock)
	ctx := context.Background()
	publish := func() request {
		t.Helper()
		if err := p.Publish(ctx, to("t", "0190f5e2-0000-7000-8000-0000000000a6")); err != nil {
			t.Fatal(err)
		}
		s := ep.seen()
		return s[len(s)-1]
	}

	r := publish()
	if !verifies(t, r, secretA) || verifies(t, r, secretNew) {
		t.Fatal("before the rotation: want the old secret's signature only")
	}
	tt.set("t", webhookpub.Endpoint{URL: ep.srv.URL, Secrets: []string{secretA, secretNew}})
	if r := publish(); verifies(t, r, secretNew) {
		t.Error("the cached answer was dropped before its TTL")
	}
	advance()
	r = publish()
	if !verifies(t, r, secretA) || !verifies(t, r, secretNew) {
		t.Errorf("during the overlap: old verifies %v, new verifies %v; want both", verifies(t, r, secretA), verifies(t, r, secretNew))
	}
	tt.set("t", webhookpub.Endpoint{URL: ep.srv.URL, Secrets: []string{secretNew}})
	advance()
	r = publish()
	if verifies(t, r, secretA) || !verifies(t, r, secretNew) {
		t.Error("after the rotation: want the new secret's signature only")
	}
}

// TestMalformedMessageIsPermanentAndSparesTheBreaker: a message whose
// request cannot be built (a header name with a space, a value with CR LF,
// as rows written behind Enqueue's back may hold) is the message's own
// fault: permanent, nothing is sent, and the endpoint's breaker does not
// count it, so the good messages after it are delivered.
func TestMalformedMessageIsPermanentAndSparesTheBreaker(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	p := newPublisher(t, ep.srv.URL, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour)))
	for name, h := range map[string]map[string]string{
		"name with a space":   {"Bad Name": "v"},
		"value with CR LF":    {"X-Note": "a\r\nInjected: yes"},
		"value with NUL":      {"X-Note": "a\x00b"},
		"name with a newline": {"X-A\nB": "v"},
	} {
		for i := range 3 {
			d := delivery("0190f5e2-0000-7000-8000-0000000000a7")
			d.Headers = h
			if err := p.Publish(context.Background(), d); !retry.IsPermanent(err) || errors.Is(err, outbox.ErrPaused) {
				t.Fatalf("%s, publish %d = %v, want permanent", name, i, err)
			}
		}
	}
	if n := len(ep.seen()); n != 0 {
		t.Errorf("endpoint saw %d requests of malformed messages", n)
	}
	for i := range 3 {
		if err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-0000000000a8")); err != nil {
			t.Fatalf("good message %d after the malformed ones: %v", i, err)
		}
	}
	// A message header cannot pose as a webhook header.
	d := delivery("0190f5e2-0000-7000-8000-0000000000a9")
	d.Headers = map[string]string{"Webhook-Signature": "v1,forged", "Webhook-Id": "other"}
	if err := p.Publish(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	r := ep.seen()[len(ep.seen())-1]
	if got := r.header.Values("Webhook-Signature"); len(got) != 1 || got[0] == "v1,forged" {
		t.Errorf("webhook-signature values %q: a message header posed as one", got)
	}
	if got := r.header.Values("Webhook-Id"); len(got) != 1 || got[0] != d.ID {
		t.Errorf("webhook-id values %q, want only %q", got, d.ID)
	}
}
