package webhookpub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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

// FuzzAllowedNetworks: WithAllowedNetworks' parser never panics, and a
// network it accepts is in the form dialled addresses are checked in
// (unmapped, no zone, masked).
func FuzzAllowedNetworks(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8", "::1", "::ffff:10.0.0.0/104", "fe80::1%eth0", "10.0.0.1/33", "", "1.2.3.4/0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := webhookpub.ParseNetwork(s)
		if err != nil {
			return
		}
		if a := p.Addr(); a.Is4In6() || a.Zone() != "" || p != p.Masked() {
			t.Fatalf("ParseNetwork(%q) = %v: not unmapped, zoneless and masked", s, p)
		}
	})
}

// FuzzFailedBodyPrintable: whatever a failing endpoint answers, the error
// quotes at most 200 bytes of it, printable.
func FuzzFailedBodyPrintable(f *testing.F) {
	for _, s := range []string{"", "oops", "\x00\x1b[31m\r\n", strings.Repeat("é", 150)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		q := webhookpub.QuoteBody(body)
		if len(body) == 0 {
			if q != "" {
				t.Fatalf("empty body quoted as %q", q)
			}
			return
		}
		u, err := strconv.Unquote(strings.TrimPrefix(q, ": "))
		if err != nil {
			t.Fatalf("%q does not unquote: %v", q, err)
		}
		if len(u) > 200 || !strings.HasPrefix(string(body), u) {
			t.Fatalf("quoted %d bytes %q of %q", len(u), u, body)
		}
		for _, r := range q {
			if !strconv.IsPrint(r) {
				t.Fatalf("%q holds the unprintable %U", q, r)
			}
		}
	})
}
