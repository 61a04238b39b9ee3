package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/internal/testserver"
)

// TestServerFaults: a Redis that hangs (the caller's deadline passes) or
// drops every connection makes each operation fail with an error, never
// ErrNotFound or ErrLeaseLost, and the store works again by itself once the
// network is back.
func TestServerFaults(t *testing.T) {
	t.Parallel()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testserver.NewProxy(t, opt.Addr)
	opt.Addr = proxy.Addr()
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	_, prefix := newClient(t)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, fault := range []struct {
		name  string
		apply func()
	}{{"hang", proxy.Hang}, {"cut", proxy.Cut}} {
		held, err := s.Claim(ctx, "held-"+fault.name, "fp", time.Hour)
		if err != nil || !held.Acquired {
			t.Fatalf("claim = %+v, %v", held, err)
		}
		fault.apply()
		tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		if c, err := s.Claim(tctx, "new-"+fault.name, "fp", time.Hour); err == nil || c.Acquired {
			t.Errorf("%s: claim = %+v, %v; want an error", fault.name, c, err)
		}
		if _, err := s.Get(tctx, "held-"+fault.name); err == nil || errors.Is(err, idempotency.ErrNotFound) {
			t.Errorf("%s: get = %v; want a connection error", fault.name, err)
		}
		if err := s.Complete(tctx, "held-"+fault.name, held.Token, []byte("r"), time.Hour); err == nil || errors.Is(err, idempotency.ErrLeaseLost) {
			t.Errorf("%s: complete = %v; want a connection error", fault.name, err)
		}
		cancel()
		proxy.Restore()
		for i := 0; i < 50; i++ {
			if _, err = s.Get(ctx, "held-"+fault.name); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: the store did not recover: %v", fault.name, err)
		}
	}
}
