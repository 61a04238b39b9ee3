package breaker_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/retry"
)

// The composition of an outbound client, outermost first: the caller's
// deadline, retry, breaker, the base transport. Retry sees the breaker's
// open error, whose RetryAfter() is the remaining open time: longer than
// retry's cap here, so it gives up at once instead of hammering.
func ExampleTransport_withRetry() {
	var requests atomic.Int32
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= 2 || r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer provider.Close()

	quiet := slog.New(slog.DiscardHandler)
	cb, err := breaker.NewTransport(nil,
		breaker.WithConsecutiveFailures(3),
		breaker.WithOpenDuration(time.Minute),
		breaker.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	policy, err := retry.New(retry.WithBackoff(time.Millisecond, 10*time.Millisecond),
		retry.WithMaxRetryAfter(30*time.Second), retry.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	rt, err := retry.NewTransport(cb, policy)
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: rt, Timeout: 10 * time.Second}

	resp, err := client.Get(provider.URL + "/") // two 503s, then 200
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after", requests.Load(), "requests")

	_, err = client.Get(provider.URL + "/down") // 503s until the circuit opens
	fmt.Println("gave up:", errors.Is(err, retry.ErrGaveUp), "circuit open:", errors.Is(err, breaker.ErrOpen))
	fmt.Println("requests that reached the provider:", requests.Load())
	// Output:
	// 200 after 3 requests
	// gave up: true circuit open: true
	// requests that reached the provider: 6
}
