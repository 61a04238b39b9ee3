package redisshare_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/breaker/redisshare"
)

// Every replica of the service runs the same code: the breakers named
// "payments-api" share one state through Redis.
func Example() {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()

	share, err := redisshare.New(client, redisshare.WithPrefix("checkout:breaker:"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go share.Run(ctx) // the loop that pushes counts and pulls state; ends with ctx

	transport, err := breaker.NewTransport(nil,
		breaker.WithKeyFunc(func(*http.Request) string { return "payments-api" }),
		breaker.WithOpenDuration(30*time.Second),
		breaker.WithSync(share))
	if err != nil {
		log.Fatal(err)
	}
	_ = &http.Client{Transport: transport, Timeout: 5 * time.Second}
	fmt.Println("replicas see one state within", share.StalenessBound())
}
