package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/retry"
)

func ExampleDo() {
	p, err := retry.New(
		retry.WithMaxAttempts(5),
		retry.WithBackoff(time.Millisecond, 10*time.Millisecond),
	)
	if err != nil {
		panic(err)
	}
	calls := 0
	err = retry.Do(context.Background(), p, func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("connection reset")
		}
		return nil
	})
	fmt.Println(err, calls)
	// Output: <nil> 3
}

func ExampleDoValue() {
	p, err := retry.New(retry.WithMaxAttempts(2), retry.WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		panic(err)
	}
	_, err = retry.DoValue(context.Background(), p, func(ctx context.Context) (int, error) {
		return 0, errors.New("still down")
	})
	var g *retry.GaveUpError
	if errors.As(err, &g) {
		fmt.Println(errors.Is(err, retry.ErrGaveUp), g.Attempts, g.Err)
	}
	// Output: true 2 still down
}

func ExamplePermanent() {
	p, err := retry.New()
	if err != nil {
		panic(err)
	}
	calls := 0
	err = retry.Do(context.Background(), p, func(ctx context.Context) error {
		calls++
		return retry.Permanent(errors.New("card declined"))
	})
	fmt.Println(err, calls)
	// Output: card declined 1
}

func ExampleAfter() {
	p, err := retry.New(retry.WithMaxRetryAfter(time.Second))
	if err != nil {
		panic(err)
	}
	err = retry.Do(context.Background(), p, func(ctx context.Context) error {
		return retry.After(errors.New("rate limited"), time.Hour)
	})
	var rae *retry.RetryAfterError
	if errors.As(err, &rae) {
		fmt.Println("asked to wait", rae.Delay, "allowed", rae.Limit)
	}
	// Output: asked to wait 1h0m0s allowed 1s
}

func ExampleTransport() {
	var calls atomic.Int32
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "charged once, key ", r.Header.Get("Idempotency-Key") != "")
	}))
	defer partner.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()

	p, err := retry.New(retry.WithMaxAttempts(3), retry.WithAttemptTimeout(5*time.Second))
	if err != nil {
		panic(err)
	}
	tr, err := retry.NewTransport(base, p, retry.WithAutoIdempotencyKey())
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the overall deadline
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, partner.URL+"/charges", nil)
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", calls.Load(), "attempts")
	// Output: 200 charged once, key true after 2 attempts
}

func ExampleDelay() {
	// A relay that stores its attempt count computes the same jittered waits
	// as the loop: uniformly random below a ceiling that doubles from base up
	// to max.
	base, max := time.Second, 10*time.Second
	for attempt, ceiling := range []time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second} {
		if attempt == 0 {
			continue
		}
		d := retry.Delay(attempt, base, max)
		fmt.Printf("attempt %d: below %v: %v\n", attempt, ceiling, d >= 0 && d < ceiling)
	}
	// Output:
	// attempt 1: below 1s: true
	// attempt 2: below 2s: true
	// attempt 3: below 4s: true
	// attempt 4: below 8s: true
	// attempt 5: below 10s: true
}
