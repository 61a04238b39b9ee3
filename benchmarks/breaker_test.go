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
)

var errDown = errors.New("down")

// BenchmarkBreakerClosed runs a call that succeeds through a closed breaker.
// The baseline ("direct") is the call alone.
func BenchmarkBreakerClosed(b *testing.B) {
	ctx := context.Background()
	work := func(context.Context) (int, error) { return 1, nil }
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := work(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("steadfast", func(b *testing.B) {
		br, err := breaker.New("bench")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := breaker.Execute(ctx, br, work); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench"})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(func() (int, error) { return work(ctx) }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		exec := failsafe.With[int](circuitbreaker.NewWithDefaults[int]())
		b.ReportAllocs()
		for b.Loop() {
			if _, err := exec.Get(func() (int, error) { return work(ctx) }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBreakerOpen measures the rejection of a call by an open breaker,
// tripped by one failure and held open for an hour. The baseline
// ("direct-failure") is the failing call alone.
func BenchmarkBreakerOpen(b *testing.B) {
	ctx := context.Background()
	fail := func(context.Context) (int, error) { return 0, errDown }
	b.Run("direct-failure", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := fail(ctx); err == nil {
				b.Fatal("no error")
			}
		}
	})
	b.Run("steadfast", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour),
			breaker.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = breaker.Execute(ctx, br, fail)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := breaker.Execute(ctx, br, fail); !errors.Is(err, breaker.ErrOpen) {
				b.Fatal(err)
			}
		}
	})
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
			Name:        "bench",
			Timeout:     time.Hour,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 },
		})
		call := func() (int, error) { return fail(ctx) }
		_, _ = cb.Execute(call)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(call); !errors.Is(err, gobreaker.ErrOpenState) {
				b.Fatal(err)
			}
		}
	})
	b.Run("failsafe-go", func(b *testing.B) {
		cb := circuitbreaker.NewBuilder[int]().WithFailureThreshold(1).WithDelay(time.Hour).Build()
		exec := failsafe.With[int](cb)
		call := func() (int, error) { return fail(ctx) }
		_, _ = exec.Get(call)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := exec.Get(call); !errors.Is(err, circuitbreaker.ErrOpen) {
				b.Fatal(err)
			}
		}
	})
}
