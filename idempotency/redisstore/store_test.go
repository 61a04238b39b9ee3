package redisstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) {
	// The restart test makes go-redis log every failed dial; keep the test
	// output readable.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// newClient connects to TEST_REDIS_URL (or skips) and returns a client and a
// key prefix of the test's own, whose keys are deleted at the end.
func newClient(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.PoolSize = 16
	rdb := redis.NewClient(opt)
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			rdb.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
		rdb.Close()
	})
	return rdb, prefix
}

func newStore(t testing.TB, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	rdb, prefix := newClient(t)
	s, err := redisstore.New(rdb, append([]redisstore.Option{redisstore.WithPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs idempotency/storetest; Redis keeps time, so the cases
// that wait sleep for real with short leases.
func TestConformance(t *testing.T) {
	rdb, prefix := newClient(t)
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix), redisstore.WithMaxResponseSize(2<<20))
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Harness{Store: s, Short: 200 * time.Millisecond, MaxResponseBytes: 2 << 20}
	})
}

func TestLifecycleAndFencing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	c, err := s.Claim(ctx, "k", "fp", time.Hour)
	if err != nil || !c.Acquired {
		t.Fatalf("claim = %+v, %v", c, err)
	}
	dup, err := s.Claim(ctx, "k", "fp", time.Hour)
	if err != nil || dup.Acquired || dup.Record.Status != idempotency.StatusInProgress || dup.Record.Token != c.Token {
		t.Fatalf("duplicate = %+v, %v", dup, err)
	}
	if err := s.Complete(ctx, "k", c.Token+1, []byte("x"), time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("complete with wrong token = %v", err)
	}
	resp := []byte("\x00binary\xffresponse")
	if err := s.Complete(ctx, "k", c.Token, resp, time.Hour); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(ctx, "k")
	if err != nil || !bytes.Equal(rec.Response, resp) || rec.Status != idempotency.StatusCompleted {
		t.Fatalf("get = %+v, %v", rec, err)
	}
	if d := rec.TTL; d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("expires in %v, want about an hour", d)
	}
	if err := s.ForceRelease(ctx, "k"); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("force release of a completed record = %v, want ErrNotFound", err)
	}
}

func TestForceRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	c, _ := s.Claim(ctx, "stuck", "fp", time.Hour)
	if err := s.ForceRelease(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "stuck", c.Token, nil, time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("holder's complete after force release = %v", err)
	}
	if c2, err := s.Claim(ctx, "stuck", "fp", time.Hour); err != nil || !c2.Acquired {
		t.Fatalf("claim after force release = %+v, %v", c2, err)
	}
}

// TestKeyExpiry: Redis expires a completed record at the end of its
// retention and an abandoned claim at the end of lease plus the abandoned
// retention; the TTLs are set on the key.
func TestKeyExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := newClient(t)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix), redisstore.WithAbandonedRetention(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := s.Claim(ctx, "a", "fp", 10*time.Second)
	ttl := rdb.PTTL(ctx, prefix+"a").Val()
	if ttl <= 60*time.Second || ttl > 70*time.Second {
		t.Fatalf("in-progress TTL %v, want lease + abandoned retention (70s)", ttl)
	}
	_ = s.Complete(ctx, "a", c.Token, []byte("r"), 5*time.Second)
	ttl = rdb.PTTL(ctx, prefix+"a").Val()
	if ttl <= 0 || ttl > 5*time.Second {
		t.Fatalf("completed TTL %v, want the retention (5s)", ttl)
	}
}

func TestBadInputAndGarbage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := newClient(t)
	s, _ := redisstore.New(rdb, redisstore.WithPrefix(prefix), redisstore.WithMaxResponseSize(8))
	if _, err := s.Claim(ctx, "", "fp", time.Hour); !errors.Is(err, idempotency.ErrInvalid) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := s.Claim(ctx, strings.Repeat("k", 1024+1), "fp", time.Hour); !errors.Is(err, idempotency.ErrTooLarge) {
		t.Errorf("long key: %v", err)
	}
	c, _ := s.Claim(ctx, "k", "fp", time.Hour)
	if err := s.Complete(ctx, "k", c.Token, make([]byte, 9), time.Hour); !errors.Is(err, idempotency.ErrTooLarge) {
		t.Errorf("large response: %v", err)
	}
	if r, _ := s.Get(ctx, "k"); r.Status != idempotency.StatusInProgress {
		t.Errorf("refused completion changed the record: %+v", r)
	}
	// A foreign value under the prefix: a clear error, never a claim.
	rdb.HSet(ctx, prefix+"garbage", "s", "9", "t", "x")
	if _, err := s.Get(ctx, "garbage"); !errors.Is(err, redisstore.ErrCorrupt) {
		t.Errorf("get of garbage: %v", err)
	}
	if c, err := s.Claim(ctx, "garbage", "fp", time.Hour); err == nil || c.Acquired {
		t.Errorf("claim of garbage = %+v, %v; want an error", c, err)
	}
	rdb.Set(ctx, prefix+"string", "v", time.Minute)
	if c, err := s.Claim(ctx, "string", "fp", time.Hour); err == nil || c.Acquired {
		t.Errorf("claim of a string key = %+v, %v; want an error", c, err)
	}
	if _, err := redisstore.New(rdb, redisstore.WithMaxResponseSize(0)); err == nil || !strings.Contains(err.Error(), "WithMaxResponseSize") {
		t.Errorf("New accepted WithMaxResponseSize(0): %v", err)
	}
	if _, err := redisstore.New(rdb, redisstore.WithAbandonedRetention(-1)); err == nil || !strings.Contains(err.Error(), "WithAbandonedRetention") {
		t.Errorf("New accepted WithAbandonedRetention(-1): %v", err)
	}
}

// TestUnreachable: a Redis that does not answer makes every operation fail
// cleanly within the caller's deadline.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	s, _ := redisstore.New(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := s.Claim(ctx, "k", "fp", time.Hour); err == nil || c.Acquired {
		t.Fatalf("claim on a dead server = %+v, %v", c, err)
	}
	if _, err := s.Get(ctx, "k"); err == nil || errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("get on a dead server = %v; want a connection error, not ErrNotFound", err)
	}
}

func TestConcurrentClaimsOneWinner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := s.Claim(ctx, "hot", "fp", time.Hour); err == nil && c.Acquired {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d winners", won.Load())
	}
}
