package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency/redisstore"
)

// Claim a key, do the work, store its result; a second claim replays it.
func Example() {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	defer rdb.Close()
	store, err := redisstore.New(rdb, redisstore.WithPrefix("myapp:idem:"))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	c, err := store.Claim(ctx, "order-42", "sha256-of-request", 30*time.Second)
	if err != nil {
		panic(err) // Redis unreachable: answer 503
	}
	if !c.Acquired {
		fmt.Printf("replay %s\n", c.Record.Response)
		return
	}
	// ... do the work once, then store its result ...
	if err := store.Complete(ctx, "order-42", c.Token, []byte(`{"id":42}`), 24*time.Hour); err != nil {
		log.Printf("result not stored, a retry may run the work again: %v", err)
	}
}
