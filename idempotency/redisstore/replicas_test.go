package redisstore_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

// TestReplicasExactlyOnce: four middleware instances ("replicas"), each with
// its own Redis client, share one store and receive 1,000 distinct webhook
// events, each delivered 3 times, two of them concurrently to different
// replicas. Every delivery ends in 200 with the first run's body, and each
// event's handler runs exactly once.
func TestReplicasExactlyOnce(t *testing.T) {
	t.Parallel()
	_, prefix := newClient(t) // owns the prefix's cleanup
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	durabletest.ExactlyOnce{
		Store: func(t *testing.T, _ int) idempotency.Store {
			o := *opt
			o.PoolSize = 8
			rdb := redis.NewClient(&o)
			t.Cleanup(func() { rdb.Close() })
			s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Retry: durabletest.Retry{Codes: []int{http.StatusConflict}, Retries: 100, Pause: time.Millisecond},
	}.Run(t)
}
