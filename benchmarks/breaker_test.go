package benchmarks_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/sony/gobreaker/v2"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

var (
	errDown = errors.New("down")
	quiet   = slog.New(slog.DiscardHandler)
)

// BenchmarkBreakerClosed runs a call that succeeds through a closed breaker:
// steadfast's at its defaults, gobreaker set alike (gobreakerLike), failsafe-go
// at its defaults. The baseline ("direct") is the call alone.
func BenchmarkBreakerClosed(b *testing.B) {
	ctx := context.Background()
	work := func(context.Context) (int, error) { return 1, nil }
	b.Run("direct", func(b *testing.B) {
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := work(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("steadfast", func(b *testing.B) {
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
	b.Run("failsafe-go", func(b *testing.B) {
		exec := failsafe.With[int](circuitbreaker.NewWithDefaults[int]())
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := exec.Get(func() (int, error) { return work(ctx) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkBreakerOpen measures the rejection of a call by an open breaker,
// tripped by one failure and held open for an hour. The baseline
// ("direct-failure") is the failing call alone. The kind of error (each
// library's "open" error) is checked once, before the timed loop; inside it
// only that the call was refused: errors.Is on steadfast's *OpenError costs
// more than on gobreaker's sentinel, and that cost is the caller's choice,
// not the breaker's.
func BenchmarkBreakerOpen(b *testing.B) {
	ctx := context.Background()
	fail := func(context.Context) (int, error) { return 0, errDown }
	b.Run("direct-failure", func(b *testing.B) {
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := fail(ctx); err == nil {
					b.Fatal("no error")
				}
			}
		})
	})
	b.Run("steadfast", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour),
			breaker.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := breaker.Execute(ctx, br, fail); !errors.Is(err, errDown) {
			b.Fatal(err)
		}
		if _, err := breaker.Execute(ctx, br, fail); !errors.Is(err, breaker.ErrOpen) {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := breaker.Execute(ctx, br, fail); err == nil {
					b.Fatal("not rejected")
				}
			}
		})
	})
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreakerLike(1, time.Hour)
		call := func() (int, error) { return fail(ctx) }
		if _, err := cb.Execute(call); !errors.Is(err, errDown) {
			b.Fatal(err)
		}
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
	b.Run("failsafe-go", func(b *testing.B) {
		cb := circuitbreaker.NewBuilder[int]().WithFailureThreshold(1).WithDelay(time.Hour).Build()
		exec := failsafe.With[int](cb)
		call := func() (int, error) { return fail(ctx) }
		if _, err := exec.Get(call); !errors.Is(err, errDown) {
			b.Fatal(err)
		}
		if _, err := exec.Get(call); !errors.Is(err, circuitbreaker.ErrOpen) {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if _, err := exec.Get(call); err == nil {
					b.Fatal("not rejected")
				}
			}
		})
	})
}

// gobreakerLike returns a gobreaker v2 CircuitBreaker set as a
// breaker.Breaker sets itself by default (breaker/bench_test.go does the
// same): a rolling window of 10 s in 10 buckets, one half-open probe, and a
// trip on a failure ratio of 0.5 over at least 20 calls, or, when
// consecutive > 0, after that many failures in a row; open for open.
// gobreaker's own defaults (counts cleared only on a state change, trip
// after 6 failures in a row) would measure a lighter breaker.
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
