package benchmarks_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/steadfast-go/steadfast/internal/benchcpu"
	"github.com/steadfast-go/steadfast/retry"
)

// Every retrier below is configured alike: at most 4 attempts, no wait
// between them (so that the figures are the libraries' own cost, not
// sleeping), and no retry budget (the peers have none; steadfast's is on by
// default and is switched off with retry.WithoutBudget).

var errTransient = errors.New("transient")

// flaky returns a function that fails failures times on each call of the
// returned reset, then succeeds.
func flaky(failures int) (fn func() error, reset func()) {
	left := 0
	return func() error {
			if left > 0 {
				left--
				return errTransient
			}
			return nil
		}, func() {
			left = failures
		}
}

// BenchmarkRetryFunc retries a function that succeeds at once ("success") or
// after one failure ("one-failure"). The baseline ("direct") is a plain loop
// of up to 4 calls.
func BenchmarkRetryFunc(b *testing.B) {
	ctx := context.Background()
	for _, sc := range []struct {
		name     string
		failures int
	}{{"success", 0}, {"one-failure", 1}} {
		b.Run(sc.name+"/direct", func(b *testing.B) {
			fn, reset := flaky(sc.failures)
			benchcpu.Report(b, func() {
				for b.Loop() {
					reset()
					var err error
					for range 4 {
						if err = fn(); err == nil {
							break
						}
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(sc.name+"/steadfast", func(b *testing.B) {
			p, err := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(time.Nanosecond, time.Nanosecond), retry.WithoutBudget())
			if err != nil {
				b.Fatal(err)
			}
			fn, reset := flaky(sc.failures)
			work := func(context.Context) error { return fn() }
			benchcpu.Report(b, func() {
				for b.Loop() {
					reset()
					if err := retry.Do(ctx, p, work); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(sc.name+"/failsafe-go", func(b *testing.B) {
			exec := failsafe.With[any](retrypolicy.NewBuilder[any]().WithMaxAttempts(4).Build())
			fn, reset := flaky(sc.failures)
			benchcpu.Report(b, func() {
				for b.Loop() {
					reset()
					if err := exec.Run(fn); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run(sc.name+"/backoff-v4", func(b *testing.B) {
			fn, reset := flaky(sc.failures)
			benchcpu.Report(b, func() {
				for b.Loop() {
					reset()
					bo := backoff.WithContext(backoff.WithMaxRetries(&backoff.ZeroBackOff{}, 3), ctx)
					if err := backoff.Retry(fn, bo); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// failOnceServer answers 503 to the first request of each X-Call id and 200
// to the others; a request without the header always gets 200.
func failOnceServer() *httptest.Server {
	var seen sync.Map
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Call"); id != "" {
			if _, loaded := seen.LoadOrStore(id, struct{}{}); !loaded {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			seen.Delete(id)
		}
		_, _ = io.WriteString(w, "ok")
	}))
}

// BenchmarkRetryHTTP sends GET requests to a loopback server through each
// library's retrying client: answered 200 at once ("success"), or 503 then
// 200 ("503-then-200"). The baseline ("bare") is http.Transport alone, which
// for 503-then-200 sends the second request by hand.
func BenchmarkRetryHTTP(b *testing.B) {
	srv := failOnceServer()
	defer srv.Close()

	for _, sc := range []struct {
		name     string
		failOnce bool
	}{{"success", false}, {"503-then-200", true}} {
		run := func(b *testing.B, client *http.Client, attempts int) {
			b.Helper()
			// The first requests of each client open its connection and warm
			// the server up; b.Loop starts the clock after them.
			for range 100 {
				resp, err := client.Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			benchcpu.Report(b, func() {
				var n uint64
				for b.Loop() {
					n++
					req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
					if err != nil {
						b.Fatal(err)
					}
					if sc.failOnce {
						req.Header.Set("X-Call", strconv.FormatUint(n, 10))
					}
					var resp *http.Response
					for range attempts {
						resp, err = client.Do(req)
						if err != nil {
							b.Fatal(err)
						}
						if resp.StatusCode == http.StatusOK {
							break
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
			})
		}
		b.Run(sc.name+"/bare", func(b *testing.B) {
			base := newBase()
			defer base.CloseIdleConnections()
			run(b, &http.Client{Transport: base}, 2)
		})
		b.Run(sc.name+"/steadfast", func(b *testing.B) {
			base := newBase()
			defer base.CloseIdleConnections()
			p, err := retry.New(retry.WithMaxAttempts(4), retry.WithBackoff(time.Nanosecond, time.Nanosecond), retry.WithoutBudget())
			if err != nil {
				b.Fatal(err)
			}
			rt, err := retry.NewTransport(base, p)
			if err != nil {
				b.Fatal(err)
			}
			run(b, &http.Client{Transport: rt}, 1)
		})
		b.Run(sc.name+"/go-retryablehttp", func(b *testing.B) {
			base := newBase()
			defer base.CloseIdleConnections()
			c := retryablehttp.NewClient()
			c.HTTPClient = &http.Client{Transport: base}
			c.RetryMax = 3
			c.Logger = nil
			c.Backoff = func(_, _ time.Duration, _ int, _ *http.Response) time.Duration { return 0 }
			run(b, c.StandardClient(), 1)
		})
		b.Run(sc.name+"/failsafe-go", func(b *testing.B) {
			base := newBase()
			defer base.CloseIdleConnections()
			rp := failsafehttp.NewRetryPolicyBuilder().WithMaxAttempts(4).Build()
			run(b, &http.Client{Transport: failsafehttp.NewRoundTripper(base, rp)}, 1)
		})
	}
}

// newBase returns a transport of its own, so that each benchmark starts with
// no pooled connection and closes its connections at the end.
func newBase() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}
