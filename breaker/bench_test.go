package breaker_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

var quiet = slog.New(slog.DiscardHandler)

// The breaker's own cost is measured against gobreaker v2 configured as the
// breaker configures it: the same rolling window (10 s in 10 buckets), the
// same open duration and trip condition, one half-open probe. Each side runs
// alone, in a process of its own, and rounds alternate which side goes
// first; a ratio is taken per round, then their median and range
// (benchmarks/cmd/rounds does all of this):
//
//	cd benchmarks && go run ./cmd/rounds -pkg ../breaker 'Closed$/^gobreaker$' 'Closed$/^breaker$'
//
// Beside the wall time, each side reports the process's CPU time per call
// (cpu-ns/op): on a machine shared with other work the wall time of a 100 ns
// call swings by 2x from one second to the next, its CPU time by a few
// percent.

// gobreakerLike returns a gobreaker v2 CircuitBreaker with the settings the
// breaker's defaults give its own, tripping on a failure ratio (or after
// consecutive failures when consecutive > 0) and open for open.
func gobreakerLike(consecutive int, open time.Duration) *gobreaker.CircuitBreaker[int] {
	return gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
		Name:         "bench",
		MaxRequests:  1,
		Interval:     10 * time.Second,
		BucketPeriod: time.Second,
		Timeout:      open,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if consecutive > 0 {
				return c.ConsecutiveFailures >= uint32(consecutive)
			}
			done := c.TotalSuccesses + c.TotalFailures
			return done >= 20 && float64(c.TotalFailures) >= 0.5*float64(done)
		},
	})
}

// BenchmarkClosed compares a call that succeeds through a closed Breaker
// with the same call through gobreaker v2 with the same rolling window.
func BenchmarkClosed(b *testing.B) {
	ctx := context.Background()
	work := func(context.Context) (int, error) { return 1, nil }
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreakerLike(0, 30*time.Second)
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := cb.Execute(func() (int, error) { return work(ctx) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("breaker", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := breaker.Execute(ctx, br, work); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkOpen measures the rejection of a call by an open circuit, against
// gobreaker's own rejection with the same settings. The kind of error is
// checked once, before the loop (errors.Is costs more on an *OpenError than
// on gobreaker's sentinel, and that cost is the caller's, not the
// breaker's).
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	boom := errors.New("boom")
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreakerLike(1, time.Hour)
		cb.Execute(func() (int, error) { return 0, boom })
		call := func() (int, error) { return 1, nil }
		if _, err := cb.Execute(call); !errors.Is(err, gobreaker.ErrOpenState) {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := cb.Execute(call); err == nil {
					b.Fatal("not rejected")
				}
			}
		})
	})
	b.Run("breaker", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour), breaker.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		breaker.Execute(ctx, br, func(context.Context) (int, error) { return 0, boom })
		call := func(context.Context) (int, error) { return 1, nil }
		if _, err := breaker.Execute(ctx, br, call); !errors.Is(err, breaker.ErrOpen) {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := breaker.Execute(ctx, br, call); err == nil {
					b.Fatal("not rejected")
				}
			}
		})
	})
}

// BenchmarkTransport compares GETs to a loopback server through the bare
// transport and through a breaker Transport around it.
func BenchmarkTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := &http.Transport{MaxIdleConnsPerHost: 4}
	defer base.CloseIdleConnections()
	bt, err := breaker.NewTransport(base, breaker.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", base}, {"breaker", bt}} {
		b.Run(tc.name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			benchcpu.Report(b, func() {
				for b.Loop() {
					resp, err := tc.rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
