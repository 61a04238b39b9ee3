package webhookpub_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/retry"
)

func newLimiter(t testing.TB, rate int, period time.Duration, burst int) *ratelimit.Limiter {
	t.Helper()
	lim, err := ratelimit.New(ratelimit.WithLimit(rate, period, burst))
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

func TestWithRateLimitValidates(t *testing.T) {
	t.Parallel()
	lim := newLimiter(t, 1, time.Second, 1)
	ep := map[string]webhookpub.Endpoint{"partner": {URL: "https://example.com/hook", Secrets: []string{secret}}}
	tests := []struct {
		name string
		opts []webhookpub.Option
		want string
	}{
		{"nil limiter", []webhookpub.Option{webhookpub.WithRateLimit(nil)}, "webhookpub: New: WithRateLimit: a limiter is required"},
		{"empty destination", []webhookpub.Option{webhookpub.WithRateLimit(lim, "")}, "WithRateLimit: an empty destination"},
		{"destination twice", []webhookpub.Option{webhookpub.WithRateLimit(lim, "a"), webhookpub.WithRateLimit(lim, "b", "a")}, `WithRateLimit: destination "a" has a limiter already`},
		{"twice for every destination", []webhookpub.Option{webhookpub.WithRateLimit(lim), webhookpub.WithRateLimit(lim)}, "WithRateLimit: given twice without destinations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhookpub.New(ep, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := webhookpub.New(ep, webhookpub.WithRateLimit(lim), webhookpub.WithRateLimit(lim, "a", "b")); err != nil {
		t.Fatalf("a limiter for every destination and one for some: %v", err)
	}
}

// TestThrottleTakesTheBudgetOncePublishNever: Throttle takes a delivery's
// budget from the destination's limiter; Publish takes none (the relay took
// it with Throttle: a second take would halve the quota), and a destination
// without a limiter is never throttled.
func TestThrottleTakesTheBudgetOncePublishNever(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	lim := newLimiter(t, 1, time.Hour, 1)
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{
		"partner": {URL: ep.srv.URL, Secrets: []string{secret}},
		"free":    {URL: ep.srv.URL, Secrets: []string{secret}},
	}, loopback, webhookpub.WithRateLimit(lim, "partner"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Throttle(ctx, "partner"); err != nil {
		t.Fatalf("first Throttle: %v, want nil (a burst of 1)", err)
	}
	for i := range 3 {
		if err := p.Publish(ctx, delivery("0190f5e2-7b4c-7000-8000-00000000c00"+string(rune('1'+i)))); err != nil {
			t.Fatalf("Publish %d: %v: Publish must take no budget", i+1, err)
		}
	}
	err = p.Throttle(ctx, "partner")
	d, ok := retry.RetryAfter(err)
	if !errors.Is(err, ratelimit.ErrLimited) || !ok || d <= 0 || d > time.Hour {
		t.Fatalf("second Throttle: %v (RetryAfter %v, %v), want ErrLimited with a delay within the hour", err, d, ok)
	}
	for range 5 {
		if err := p.Throttle(ctx, "free"); err != nil {
			t.Fatalf("Throttle of a destination without a limiter: %v", err)
		}
	}
	if n := len(ep.seen()); n != 3 {
		t.Fatalf("endpoint saw %d requests, want 3", n)
	}
}

// TestPublishObservesAnnouncements: what an endpoint announces, a 429's
// Retry-After or a RateLimit header on a 2xx, reaches the destination's
// limiter, so the relay's next Throttle holds the destination back.
func TestPublishObservesAnnouncements(t *testing.T) {
	t.Parallel()
	t.Run("429 Retry-After", func(t *testing.T) {
		t.Parallel()
		ep := newEndpoint(t, status(429, "Retry-After", "30"), status(200))
		lim := newLimiter(t, 100, time.Second, 100)
		p := newPublisher(t, ep.srv.URL, webhookpub.WithRateLimit(lim))
		ctx := context.Background()
		if err := p.Throttle(ctx, "partner"); err != nil {
			t.Fatal(err)
		}
		err := p.Publish(ctx, delivery("0190f5e2-7b4c-7000-8000-00000000c011"))
		if d, ok := retry.RetryAfter(err); !ok || d != 30*time.Second {
			t.Fatalf("Publish: %v (RetryAfter %v), want the 429's 30s", err, d)
		}
		err = p.Throttle(ctx, "partner")
		d, _ := retry.RetryAfter(err)
		if !errors.Is(err, ratelimit.ErrLimited) || d < 20*time.Second || d > 30*time.Second {
			t.Fatalf("Throttle after the 429: %v (RetryAfter %v), want ErrLimited for about 30s", err, d)
		}
	})
	t.Run("RateLimit on a 2xx", func(t *testing.T) {
		t.Parallel()
		ep := newEndpoint(t, status(200, "RateLimit-Policy", `"default";q=100;w=60`, "RateLimit", `"default";r=0;t=50`))
		lim := newLimiter(t, 100, time.Second, 100)
		p := newPublisher(t, ep.srv.URL, webhookpub.WithRateLimit(lim, "partner"))
		ctx := context.Background()
		if err := p.Throttle(ctx, "partner"); err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(ctx, delivery("0190f5e2-7b4c-7000-8000-00000000c012")); err != nil {
			t.Fatal(err)
		}
		err := p.Throttle(ctx, "partner")
		d, _ := retry.RetryAfter(err)
		if !errors.Is(err, ratelimit.ErrLimited) || d < 40*time.Second || d > 50*time.Second {
			t.Fatalf("Throttle after a budget of 0 for 50s was announced: %v (RetryAfter %v), want ErrLimited for about 50s", err, d)
		}
	})
}

// timedPub records, per destination, when each delivery the endpoint
// accepted was published, and the attempts the relay gave; Throttle is the
// publisher's, counted.
type timedPub struct {
	*webhookpub.Publisher
	mu        sync.Mutex
	at        map[string][]time.Time
	allowedAt map[string][]time.Time
	refused   map[string]int
	attempts  map[int]int
}

func newTimedPub(p *webhookpub.Publisher) *timedPub {
	return &timedPub{Publisher: p, at: map[string][]time.Time{}, allowedAt: map[string][]time.Time{}, refused: map[string]int{}, attempts: map[int]int{}}
}

func (p *timedPub) Publish(ctx context.Context, d outbox.Delivery) error {
	err := p.Publisher.Publish(ctx, d)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[d.Attempt]++
	if err == nil {
		p.at[d.Destination] = append(p.at[d.Destination], time.Now())
	}
	return err
}

func (p *timedPub) Throttle(ctx context.Context, destination string) error {
	err := p.Publisher.Throttle(ctx, destination)
	p.mu.Lock()
	if err == nil {
		p.allowedAt[destination] = append(p.allowedAt[destination], time.Now())
	} else {
		p.refused[destination]++
	}
	p.mu.Unlock()
	return err
}

func (p *timedPub) times(dest string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.at[dest]...)
}

// maxPerSecond fails t when more than rate+burst of times fall within any
// second.
func maxPerSecond(t *testing.T, what string, times []time.Time, rate, burst int) {
	t.Helper()
	for i := 0; i+rate+burst < len(times); i++ {
		if d := times[i+rate+burst].Sub(times[i]); d < time.Second {
			t.Errorf("%s: %d within %v: more than %d per second plus a burst of %d", what, rate+burst+1, d, rate, burst)
			return
		}
	}
}

// limitedRun is what runLimited saw.
type limitedRun struct {
	fastDone   time.Duration // from the commit of fast's messages to the last one's delivery
	slowByThen int           // slow's deliveries by then
	pub        *timedPub
}

// runLimited delivers n messages to the endpoint of "fast" and, with slow, n
// to the endpoint of "slow", limited by WithRateLimit to 10 per second in
// bursts of 1 (its burst spent before the start) and committed first, so
// that they are waiting for their budget when fast's are committed. The
// relay has two publishing slots in all, which either destination may take:
// had slow's waiting messages held one, fast would have waited.
// The endpoints serve outside the bubble (made before it).
func runLimited(t *testing.T, ob *pubtest.Outbox, slowEP, fastEP *endpoint, n int, slow bool) limitedRun {
	t.Helper()
	lim := newLimiter(t, 10, time.Second, 1)
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{
		"slow": {URL: slowEP.srv.URL, Secrets: []string{secret}},
		"fast": {URL: fastEP.srv.URL, Secrets: []string{secret}},
	}, loopback, webhookpub.WithRateLimit(lim, "slow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ob.Store.(*memstore.Store); ok {
		bubbled(p)
	}
	pub := newTimedPub(p)
	var slowMsgs, fastMsgs []outbox.Message
	for i := range n {
		slowMsgs = append(slowMsgs, outbox.Message{Topic: "invoice.paid", Destination: "slow", Payload: []byte(strconv.Itoa(i))})
		fastMsgs = append(fastMsgs, outbox.Message{Topic: "invoice.paid", Destination: "fast", Payload: []byte(strconv.Itoa(i))})
	}
	if slow {
		ob.Enqueue(t, slowMsgs...)
	}
	if err := pub.Throttle(context.Background(), "slow"); err != nil {
		t.Fatal(err)
	}
	r, err := outbox.NewRelay(ob.Store, pub, outbox.WithConcurrency(2), outbox.WithDestinationConcurrency(2),
		outbox.WithPollInterval(100*time.Millisecond), outbox.WithThrottle(pub.Throttle))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if slow {
		pubtest.Until(t, "slow's messages waiting for their budget", 0, func() bool {
			pub.mu.Lock()
			defer pub.mu.Unlock()
			return pub.refused["slow"] > 0
		})
	}
	ob.Enqueue(t, fastMsgs...)
	start := time.Now()
	r.Wake()
	var res limitedRun
	pubtest.Until(t, "fast's deliveries", 0, func() bool { return len(pub.times("fast")) == n })
	res.fastDone = pub.times("fast")[n-1].Sub(start)
	res.slowByThen = len(pub.times("slow"))
	pubtest.Until(t, "every delivery written back", 0, func() bool {
		st, err := ob.Store.Stats(context.Background())
		return err == nil && st.Pending == 0
	})
	if got := len(slowEP.seen()); slow && got != n {
		t.Errorf("slow's endpoint saw %d requests, want %d", got, n)
	}
	if got := len(fastEP.seen()); got != n {
		t.Errorf("fast's endpoint saw %d requests, want %d", got, n)
	}
	ps, err := ob.Store.Pauses(context.Background())
	if err != nil || len(ps) != 0 {
		t.Errorf("pauses in the store: %v %v, want none", ps, err)
	}
	res.pub = pub
	return res
}

// checkLimited checks what issue 15's "an outbox relay with two
// destinations, one of them limited to 10 per second: the other is
// delivered at full speed" asks, but the comparison with a run without the
// limited destination: fast's messages were all delivered while slow was
// still throttled, slow got at most 10 per second plus its burst (as the
// limiter let them through, each taken once, and as published), and no
// delivery spent more than one attempt.
func checkLimited(t *testing.T, got limitedRun, n int) {
	t.Helper()
	if got.slowByThen >= n {
		t.Errorf("slow had all its %d messages delivered when fast finished: it was not throttled", got.slowByThen)
	}
	got.pub.mu.Lock()
	allowed := got.pub.allowedAt["slow"][1:] // the first is the burst spent before the start
	attempts := got.pub.attempts
	got.pub.mu.Unlock()
	if len(allowed) != n {
		t.Errorf("slow's limiter let %d deliveries through, want %d: one take per delivery", len(allowed), n)
	}
	maxPerSecond(t, "slow's budget taken", allowed, 10, 1)
	maxPerSecond(t, "slow's deliveries", got.pub.times("slow"), 10, 1)
	if slowAt := got.pub.times("slow"); len(slowAt) == n && slowAt[n-1].Sub(slowAt[0]) < time.Duration(n-1)*time.Second/10 {
		t.Errorf("slow's %d deliveries went within %v, faster than 10 per second", n, slowAt[n-1].Sub(slowAt[0]))
	}
	if attempts[1] != 2*n || len(attempts) != 1 {
		t.Errorf("publishes by attempt %v, want all %d with attempt 1 (a throttle spends none)", attempts, 2*n)
	}
}

// TestRelayRateLimitedDestinationDoesNotSlowTheOther: issue 15 item 5, in
// a bubble over the outbox in memory, with the comparison: fast's messages
// are delivered as soon as in the same run without the limited destination.
func TestRelayRateLimitedDestinationDoesNotSlowTheOther(t *testing.T) {
	t.Parallel()
	const n = 30
	var alone, both limitedRun
	slowEP, fastEP := newEndpoint(t, status(200)), newEndpoint(t, status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) { alone = runLimited(t, ob, slowEP, fastEP, n, false) })
	slowEP, fastEP = newEndpoint(t, status(200)), newEndpoint(t, status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		both = runLimited(t, ob, slowEP, fastEP, n, true)
		checkLimited(t, both, n)
	})
	if both.fastDone > alone.fastDone {
		t.Errorf("fast's %d deliveries took %v beside the limited destination, %v without it", n, both.fastDone, alone.fastDone)
	}
}

// TestRelayRateLimitedDestinationPostgres: the same on PostgreSQL
// (TEST_POSTGRES_URL), on the wall clock: fast finishes while slow is still
// throttled.
func TestRelayRateLimitedDestinationPostgres(t *testing.T) {
	t.Parallel()
	ob := pubtest.NewPostgresOutbox(t)
	const n = 30
	checkLimited(t, runLimited(t, ob, newEndpoint(t, status(200)), newEndpoint(t, status(200)), n, true), n)
}

// TestRelayLearnsAnnouncedBudget: an endpoint that answers 429 with
// Retry-After: 30 holds back the destination's other messages in the
// relay, without attempts, until then; the one refused is retried after the
// same delay, with its second attempt.
func TestRelayLearnsAnnouncedBudget(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(429, "Retry-After", "30"), status(200))
	inBubble(t, func(t *testing.T, ob *pubtest.Outbox) {
		lim := newLimiter(t, 100, time.Second, 100)
		p := bubbled(newPublisher(t, ep.srv.URL, webhookpub.WithRateLimit(lim)))
		pub := newTimedPub(p)
		const first = "0190f5e2-7b4c-7000-8000-00000000c021"
		ob.Enqueue(t, outbox.Message{ID: first, Topic: "partner", Payload: []byte(`{}`)})
		start := time.Now()
		r, err := outbox.NewRelay(ob.Store, pub, outbox.WithThrottle(pub.Throttle))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer r.Stop(context.Background())
		pubtest.Until(t, "the 429 written back", 0, func() bool { return ob.Record(t, first).Attempts == 1 })
		var ids []string
		var msgs []outbox.Message
		for i := range 5 {
			id := "0190f5e2-7b4c-7000-8000-00000000c03" + strconv.Itoa(i)
			ids = append(ids, id)
			msgs = append(msgs, outbox.Message{ID: id, Topic: "partner", Payload: []byte(`{}`)})
		}
		ob.Enqueue(t, msgs...)
		r.Wake()
		pubtest.Until(t, "every delivery", 100*time.Millisecond, func() bool {
			st, err := ob.Store.Stats(context.Background())
			return err == nil && st.Pending == 0
		})
		if n := len(ep.seen()); n != 7 {
			t.Errorf("endpoint saw %d requests, want 7 (the 429, then six deliveries)", n)
		}
		for i, at := range pub.times("partner") {
			if at.Sub(start) < 30*time.Second {
				t.Errorf("delivery %d %v after the 429, within its Retry-After of 30s", i, at.Sub(start))
			}
		}
		if a := ob.Record(t, first).Attempts; a != 2 {
			t.Errorf("the refused message took %d attempts, want 2", a)
		}
		for _, id := range ids {
			if a := ob.Record(t, id).Attempts; a != 1 {
				t.Errorf("message %s took %d attempts, want 1: the learned budget held it back without attempts", id, a)
			}
		}
	})
}
