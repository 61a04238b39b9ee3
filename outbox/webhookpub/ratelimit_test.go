package webhookpub_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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
