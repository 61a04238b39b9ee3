package redislimit_test

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var quiet = slog.New(slog.DiscardHandler)

// newClient returns a client of TEST_REDIS_URL (or of url when given) that
// respects context deadlines, closed when the test ends; without
// TEST_REDIS_URL the test is skipped (failed under CI).
func newClient(t testing.TB, url ...string) *redis.Client {
	t.Helper()
	u := ""
	if len(url) > 0 {
		u = url[0]
	} else {
		u = testenv.RedisURL(t)
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	opt.ContextTimeoutEnabled = true
	opt.PoolSize = 32
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// prefix returns a key prefix of the test's own.
func prefix(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "steadfast-test:ratelimit:" + hex.EncodeToString(b[:]) + ":"
}
