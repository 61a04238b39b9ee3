package redislimit_test

import (
	"log"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/ratelimit/redislimit"
)

// Four replicas of a service share a provider's quota of 100 requests per
// second per account: each makes its Limiter over the same Redis and
// prefix. When Redis is away, each keeps to 25 per second.
func Example() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  "127.0.0.1:6379",
		ContextTimeoutEnabled: true, // decisions are bounded by their context
	})
	defer rdb.Close()
	store, err := redislimit.New(rdb, redislimit.WithPrefix("payments:quota:"))
	if err != nil {
		log.Fatal(err)
	}
	lim, err := ratelimit.New(
		ratelimit.WithLimit(100, time.Second, 10),
		ratelimit.WithLimit(10_000, time.Hour, 10_000),
		ratelimit.WithStore(store, 4),
	)
	if err != nil {
		log.Fatal(err)
	}
	transport, err := ratelimit.NewTransport(http.DefaultTransport, lim,
		ratelimit.WithKey(func(r *http.Request) string { return r.Header.Get("Stripe-Account") }))
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: transport}
	_ = client // calls to the provider go through the shared quota
}
