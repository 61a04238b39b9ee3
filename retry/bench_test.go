package retry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/steadfast-go/steadfast/internal/benchcpu"
	"github.com/steadfast-go/steadfast/retry"
)

// BenchmarkDo measures a call that succeeds at once: the direct call (the
// baseline), Do, and backoff/v4's Retry with a fresh ExponentialBackOff per
// call (its state, like ours, is per call).
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	work := func(context.Context) error { return nil }
	b.Run("direct", func(b *testing.B) {
		benchcpu.Report(b, func() {
			for b.Loop() {
				if err := work(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("retry.Do", func(b *testing.B) {
		p, err := retry.New()
		if err != nil {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if err := retry.Do(ctx, p, work); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("retry.Do-no-budget", func(b *testing.B) {
		p, err := retry.New(retry.WithoutBudget())
		if err != nil {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if err := retry.Do(ctx, p, work); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("backoff.Retry", func(b *testing.B) {
		benchcpu.Report(b, func() {
			for b.Loop() {
				op := func() error { return work(ctx) }
				if err := backoff.Retry(op, backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(), 3), ctx)); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkTransport measures a GET to a loopback server: the bare
// http.Transport (the baseline), the bare transport with a timeout the caller
// sets on each request's context (the baseline of a per-attempt timeout; it
// includes building the request), then a retry.Transport without and with a
// per-attempt timeout.
func BenchmarkTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	run := func(b *testing.B, rt http.RoundTripper) {
		client := &http.Client{Transport: rt}
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	newBase := func(b *testing.B) *http.Transport {
		base := &http.Transport{MaxIdleConnsPerHost: 4}
		b.Cleanup(base.CloseIdleConnections)
		return base
	}
	b.Run("bare", func(b *testing.B) { run(b, newBase(b)) })
	b.Run("bare+context-timeout", func(b *testing.B) {
		// The baseline for a per-attempt timeout: the caller bounds each
		// request with context.WithTimeoutCause itself.
		base := newBase(b)
		client := &http.Client{Transport: base}
		benchcpu.Report(b, func() {
			for b.Loop() {
				ctx, cancel := context.WithTimeoutCause(context.Background(), 5*time.Second, retry.ErrAttemptTimeout)
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				if err != nil {
					b.Fatal(err)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				cancel()
			}
		})
	})
	b.Run("retry", func(b *testing.B) {
		p, err := retry.New()
		if err != nil {
			b.Fatal(err)
		}
		tr, err := retry.NewTransport(newBase(b), p)
		if err != nil {
			b.Fatal(err)
		}
		run(b, tr)
	})
	b.Run("retry+attempt-timeout", func(b *testing.B) {
		p, err := retry.New(retry.WithAttemptTimeout(5 * time.Second))
		if err != nil {
			b.Fatal(err)
		}
		tr, err := retry.NewTransport(newBase(b), p)
		if err != nil {
			b.Fatal(err)
		}
		run(b, tr)
	})
}
