package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/retry"
)

// A caller whose deadline is shorter than the wait gets an error at once,
// which says how long the wait would be.
func ExampleLimiter_Wait() {
	lim, err := ratelimit.New(ratelimit.WithLimit(2, time.Second, 1)) // 2 per second
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := lim.Wait(ctx, "acct_1"); err != nil { // the burst: at once
		log.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = lim.Wait(short, "acct_1")
	var limited *ratelimit.LimitedError
	if errors.As(err, &limited) {
		fmt.Println("come back in", limited.RetryAfter().Round(100*time.Millisecond))
	}
	// Output: come back in 500ms
}

// A relay asks Allow before each delivery: a destination without budget is
// skipped until its limiter says, and the others keep flowing.
func ExampleLimiter_Allow() {
	lim, err := ratelimit.New(ratelimit.WithLimit(10, time.Second, 2))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, dest := range []string{"partner-a", "partner-a", "partner-a", "partner-b"} {
		if err := lim.Allow(ctx, dest); err != nil {
			d, _ := retry.RetryAfter(err) // the error protocol: *LimitedError
			fmt.Printf("%s: keep it, come back in %v\n", dest, d.Round(10*time.Millisecond))
			continue
		}
		fmt.Printf("%s: deliver\n", dest)
	}
	// Output:
	// partner-a: deliver
	// partner-a: deliver
	// partner-a: keep it, come back in 100ms
	// partner-b: deliver
}

// The layers of an outbound client, outermost first: the caller's deadline,
// the quota (ratelimit), retries (retry), the breaker, the base transport.
// The quota wait happens before retry starts an attempt and its timeout, so
// it is never an attempt timeout, a breaker failure or a spent retry; a 429
// is retried after its Retry-After and never counted by the breaker. The
// provider here announces its budget, and the limiter keeps to it.
func ExampleTransport() {
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Policy", `"default";q=100;w=60`)
		w.Header().Set("RateLimit", `"default";r=99;t=60`) // 99 left for a minute
		fmt.Fprintln(w, "ok")
	}))
	defer provider.Close()

	lim, err := ratelimit.New(ratelimit.WithLimit(10, time.Second, 5)) // per host
	if err != nil {
		log.Fatal(err)
	}
	cb, err := breaker.NewTransport(&http.Transport{})
	if err != nil {
		log.Fatal(err)
	}
	policy, err := retry.New(retry.WithAttemptTimeout(2 * time.Second))
	if err != nil {
		log.Fatal(err)
	}
	retrying, err := retry.NewTransport(cb, policy)
	if err != nil {
		log.Fatal(err)
	}
	limited, err := ratelimit.NewTransport(retrying, lim)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: limited}
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, provider.URL+"/v1/charges", nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	for _, st := range lim.Keys() {
		fmt.Printf("%.2f requests/s, announced by the provider: %v\n", st.Rate, st.Announced)
	}
	// Output:
	// 200 OK
	// 1.65 requests/s, announced by the provider: true
}
