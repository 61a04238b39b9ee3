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
)

var quiet = slog.New(slog.DiscardHandler)

// BenchmarkClosed compares a call through a closed Breaker with the same
// call through a bare gobreaker v2 CircuitBreaker.
func BenchmarkClosed(b *testing.B) {
	ctx := context.Background()
	work := func(context.Context) (int, error) { return 1, nil }
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench", Interval: 10 * time.Second, BucketPeriod: time.Second})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(func() (int, error) { return work(ctx) }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("breaker", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithLogger(quiet))
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
}

// BenchmarkOpen measures the rejection of a call by an open circuit, against
// gobreaker's own rejection.
func BenchmarkOpen(b *testing.B) {
	ctx := context.Background()
	boom := errors.New("boom")
	b.Run("gobreaker", func(b *testing.B) {
		cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Name: "bench", Timeout: time.Hour,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 }})
		cb.Execute(func() (int, error) { return 0, boom })
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cb.Execute(func() (int, error) { return 1, nil }); err != gobreaker.ErrOpenState {
				b.Fatal(err)
			}
		}
	})
	b.Run("breaker", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(time.Hour), breaker.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		breaker.Execute(ctx, br, func(context.Context) (int, error) { return 0, boom })
		b.ReportAllocs()
		for b.Loop() {
			if _, err := breaker.Execute(ctx, br, func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, breaker.ErrOpen) {
				b.Fatal(err)
			}
		}
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
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
