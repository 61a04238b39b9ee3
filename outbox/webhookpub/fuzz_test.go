package webhookpub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/retry"
)

// FuzzRetryAfter sends arbitrary Retry-After values with a 503: the
// publisher must never panic, never ask for a negative delay, and ask for a
// delay only when the value is valid.
func FuzzRetryAfter(f *testing.F) {
	var value atomic.Value // string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Retry-After"] = []string{value.Load().(string)}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	f.Cleanup(srv.Close)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{"partner": {URL: srv.URL, Secrets: []string{secret}}},
		loopback, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(1<<30)))
	if err != nil {
		f.Fatal(err)
	}
	webhookpub.SetClock(p, func() time.Time { return now })
	for _, s := range []string{"120", "0", "-1", "1e3", " 7 ", "Fri, 02 Jan 2026 03:06:05 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "99999999999999999999", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if !validHeaderValue(v) {
			t.Skip()
		}
		value.Store(v)
		err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-00000000f001"))
		if err == nil || retry.IsPermanent(err) {
			t.Fatalf("503 gave %v, want a retryable error", err)
		}
		if d, ok := retry.RetryAfter(err); ok && d < 0 {
			t.Fatalf("Retry-After %q gave a negative delay %v", v, d)
		}
	})
}

// validHeaderValue reports whether net/http would send v as is.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
