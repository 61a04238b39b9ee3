package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
)

func ExampleExecute() {
	b, err := breaker.New("inventory",
		breaker.WithConsecutiveFailures(3),
		breaker.WithOpenDuration(time.Minute),
		breaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	lookup := func(ctx context.Context) (int, error) { return 0, errors.New("inventory: 503") }
	for i := 1; i <= 4; i++ {
		_, err := breaker.Execute(context.Background(), b, lookup)
		var open *breaker.OpenError
		if errors.As(err, &open) {
			fmt.Printf("call %d: rejected, open for about %v\n", i, open.RetryAfter().Round(time.Minute))
			continue
		}
		fmt.Printf("call %d: %v\n", i, err)
	}
	fmt.Println("state:", b.State())
	// Output:
	// call 1: inventory: 503
	// call 2: inventory: 503
	// call 3: inventory: 503
	// call 4: rejected, open for about 1m0s
	// state: open
}

func ExampleExecuteWithFallback() {
	b, _ := breaker.New("prices", breaker.WithConsecutiveFailures(1), breaker.WithLogger(slog.New(slog.DiscardHandler)))
	live := func(ctx context.Context) (string, error) { return "", errors.New("prices: timeout") }
	cached := func(ctx context.Context, err error) (string, error) { return "last known prices", nil }
	for range 2 {
		p, err := breaker.ExecuteWithFallback(context.Background(), b, live, cached)
		fmt.Println(p, err, b.State())
	}
	// Output:
	// last known prices <nil> open
	// last known prices <nil> open
}

func ExampleTransport() {
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer provider.Close()

	// One breaker per host; the composition for a real client is
	// retry.Transport around breaker.Transport around the base transport.
	t, err := breaker.NewTransport(nil,
		breaker.WithConsecutiveFailures(2),
		breaker.WithOpenDuration(30*time.Second),
		breaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: t}
	for range 3 {
		resp, err := client.Get(provider.URL)
		if err != nil {
			var ra interface{ RetryAfter() time.Duration }
			errors.As(err, &ra)
			fmt.Println("open:", errors.Is(err, breaker.ErrOpen), "retry after about", ra.RetryAfter().Round(10*time.Second))
			continue
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// 502
	// 502
	// open: true retry after about 30s
}

func ExampleGroup() {
	g, _ := breaker.NewGroup(breaker.WithMaxBreakers(100), breaker.WithLogger(slog.New(slog.DiscardHandler)))
	for _, tenant := range []string{"acme", "globex", "acme"} {
		b, err := g.Get(tenant)
		if err != nil {
			fmt.Println(err)
			continue
		}
		n, _ := breaker.Execute(context.Background(), b, func(context.Context) (int, error) { return len(tenant), nil })
		fmt.Println(b.Name(), n)
	}
	fmt.Println(g.Len(), "breakers")
	// Output:
	// acme 4
	// globex 6
	// acme 4
	// 2 breakers
}

func ExampleWithBulkhead() {
	b, _ := breaker.New("reports", breaker.WithBulkhead(1, 0), breaker.WithLogger(slog.New(slog.DiscardHandler)))
	inside, leave := make(chan struct{}), make(chan struct{})
	go breaker.Execute(context.Background(), b, func(context.Context) (int, error) {
		close(inside)
		<-leave
		return 0, nil
	})
	<-inside
	_, err := breaker.Execute(context.Background(), b, func(context.Context) (int, error) { return 1, nil })
	fmt.Println(err)
	close(leave)
	// Output:
	// breaker: bulkhead full
}

// A provider that rate-limits is up: its 429 should neither open the circuit
// nor keep it closed, so the classifier ignores it.
func ExampleWithClassifier() {
	errRateLimited := errors.New("429 Too Many Requests")
	b, err := breaker.New("partner",
		breaker.WithConsecutiveFailures(2),
		breaker.WithClassifier(func(_ context.Context, err error) breaker.Outcome {
			if errors.Is(err, errRateLimited) {
				return breaker.Ignore
			}
			return breaker.Failure
		}),
		breaker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	for _, e := range []error{errRateLimited, errRateLimited, errRateLimited, errors.New("502 Bad Gateway")} {
		breaker.Execute(context.Background(), b, func(context.Context) (int, error) { return 0, e })
	}
	fmt.Println("after three 429 and one 502:", b.State())
	// Output:
	// after three 429 and one 502: closed
}
