package redislimit_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/ratelimit/redislimit"
)

// A shared decision is measured against a bare EVALSHA of the same script
// with the same arguments, on the same client: the cost of the Store and of
// the Limiter around it (the breaker, the timeout, the key's entry) over one
// Redis round trip. Each side runs alone; rounds alternate when the test
// binary is run several times, and a ratio is taken per round:
//
//	go test -c -o /tmp/redislimit.test ./ratelimit/redislimit &&
//	for i in 1 2 3 4 5; do TEST_REDIS_URL=redis://127.0.0.1:6379/0 /tmp/redislimit.test -test.run '^$' -test.bench Decision -test.benchmem -test.benchtime 2s; done
//
// (the ratios limiter/evalsha and store/evalsha of each round, then their
// median and range). The quota is one no benchmark exhausts, so every
// decision lets the request through and writes the window's state. The
// Store's timeout is a second, so that a loaded machine measures round
// trips, not the Limiter's fallback to its local share.
func BenchmarkDecision(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	limits := []ratelimit.Limit{{Rate: 1_000_000, Period: time.Second, Burst: 1 << 20}}
	const key = "bench"
	b.Run("evalsha", func(b *testing.B) {
		pre := prefix(b)
		sha, err := c.ScriptLoad(ctx, scriptSource(b)).Result()
		if err != nil {
			b.Fatal(err)
		}
		e := int64(1) // µs: 1,000,000 per second
		args := []any{"reserve", int64(0), int64(time.Hour / time.Microsecond), 1, e, e * (1<<20 - 1)}
		keys := []string{pre + "{" + key + "}"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.EvalSha(ctx, sha, keys, args...).Int64Slice(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		s, err := redislimit.New(c, redislimit.WithPrefix(prefix(b)), redislimit.WithTimeout(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Reserve(ctx, key, limits, 0, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("limiter", func(b *testing.B) {
		s, err := redislimit.New(c, redislimit.WithPrefix(prefix(b)), redislimit.WithTimeout(time.Second))
		if err != nil {
			b.Fatal(err)
		}
		lim, err := ratelimit.New(ratelimit.WithLimit(1_000_000, time.Second, 1<<20), ratelimit.WithStore(s, 4), ratelimit.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := lim.Wait(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func scriptSource(b *testing.B) string {
	src, err := os.ReadFile("limiter.lua")
	if err != nil {
		b.Fatal(err)
	}
	return string(src)
}
