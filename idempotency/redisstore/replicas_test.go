package redisstore_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency"
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
	events := 1000
	if testing.Short() {
		events = 150
	}
	_, prefix := newClient(t) // owns the prefix's cleanup
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	runs := make([]atomic.Int32, events)
	var replicas []http.Handler
	for r := 0; r < 4; r++ {
		o := *opt
		o.PoolSize = 8
		rdb := redis.NewClient(&o)
		t.Cleanup(func() { rdb.Close() })
		s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		mw, err := idempotency.Middleware(s,
			idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")),
			idempotency.WithWait(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var n int
			fmt.Sscan(strings.TrimPrefix(r.Header.Get("webhook-id"), "evt_"), &n)
			runs[n].Add(1)
			fmt.Fprintf(w, "handled %d", n)
		})))
	}
	deliver := func(event, replica int) error {
		for attempt := 0; ; attempt++ {
			req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(fmt.Sprintf(`{"event":%d}`, event)))
			req.Header.Set("webhook-id", fmt.Sprintf("evt_%d", event))
			rec := httptest.NewRecorder()
			replicas[(replica+attempt)%len(replicas)].ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			switch {
			case rec.Code == http.StatusOK && string(body) == fmt.Sprintf("handled %d", event):
				return nil
			case rec.Code == http.StatusConflict && attempt < 100:
				time.Sleep(time.Millisecond)
			default:
				return fmt.Errorf("event %d: %d %s", event, rec.Code, body)
			}
		}
	}
	work := make(chan int)
	errs := make(chan error, 3*events)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				first := rand.IntN(4)
				var pair sync.WaitGroup
				pair.Add(2)
				go func() { defer pair.Done(); errs <- deliver(e, first) }()
				go func() { defer pair.Done(); errs <- deliver(e, first+1) }()
				pair.Wait()
				errs <- deliver(e, first+2)
			}
		}()
	}
	for e := 0; e < events; e++ {
		work <- e
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for e := range runs {
		if n := runs[e].Load(); n != 1 {
			t.Fatalf("event %d: handler ran %d times, want 1", e, n)
		}
	}
}
