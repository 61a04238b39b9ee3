package benchmarks_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/internal/benchcpu"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/ratelimit/redislimit"
)

// BenchmarkSharedRateLimit compares one shared rate-limit decision on Redis
// (a GCRA script, one round trip, the request let through):
// go-redis/redis_rate's Limiter.Allow, steadfast's redislimit.Store.Reserve,
// and a ratelimit.Limiter.Wait over that Store (with its breaker and the
// per-decision timeout). The quota is one no benchmark exhausts. It skips
// without TEST_REDIS_URL:
//
//	TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench SharedRateLimit -benchmem -count 5 .
func BenchmarkSharedRateLimit(b *testing.B) {
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		b.Skip("TEST_REDIS_URL is not set")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true // redislimit refuses a client without it
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	var r [6]byte
	rand.Read(r[:])
	prefix := "steadfast-bench:" + hex.EncodeToString(r[:]) + ":"
	defer func() {
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		keys2, _ := c.Keys(ctx, "rate:"+prefix+"*").Result()
		if all := append(keys, keys2...); len(all) > 0 {
			c.Del(ctx, all...)
		}
	}()
	const rate, burst = 1_000_000, 1 << 20

	b.Run("redis_rate", func(b *testing.B) {
		lim := redis_rate.NewLimiter(c)
		limit := redis_rate.Limit{Rate: rate, Burst: burst, Period: time.Second}
		benchcpu.Report(b, func() {
			for b.Loop() {
				res, err := lim.Allow(ctx, prefix+"peer", limit)
				if err != nil || res.Allowed != 1 {
					b.Fatal(res, err)
				}
			}
		})
	})
	b.Run("redislimit", func(b *testing.B) {
		s, err := redislimit.New(c, redislimit.WithPrefix(prefix), redislimit.WithTimeout(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		limits := []ratelimit.Limit{{Rate: rate, Period: time.Second, Burst: burst}}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if d, err := s.Reserve(ctx, "store", limits, 0, 0); err != nil || d != 0 {
					b.Fatal(d, err)
				}
			}
		})
	})
	b.Run("ratelimit", func(b *testing.B) {
		s, err := redislimit.New(c, redislimit.WithPrefix(prefix), redislimit.WithTimeout(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		lim, err := ratelimit.New(ratelimit.WithLimit(rate, time.Second, burst), ratelimit.WithStore(s, 4))
		if err != nil {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				if err := lim.Allow(ctx, "limiter"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
