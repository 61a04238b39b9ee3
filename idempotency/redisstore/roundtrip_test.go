package redisstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
)

// counter is a go-redis hook that counts the round trips (commands and
// pipelines sent) and the commands the client sends.
type counter struct {
	mu             sync.Mutex
	trips, command int
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		c.trips++
		c.command++
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		c.trips++
		c.command += len(cmds)
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (c *counter) read() (trips, commands int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trips, c.command
}

// TestOneCommandPerClaim: the claim of a new key and the claim of a
// completed key (a replay) are each one round trip carrying one command,
// SET NX GET, once the store has read the server's clock (which it does
// beside a claim, once a second); the replay reports the retention left.
// Completing is one round trip.
func TestOneCommandPerClaim(t *testing.T) {
	t.Parallel()
	rdb, prefix := newClient(t)
	var n counter
	rdb.AddHook(&n)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	measure := func(f func()) (trips, commands int) {
		t0, c0 := n.read()
		f()
		t1, c1 := n.read()
		return t1 - t0, c1 - c0
	}
	claim := func(key string) idempotency.Claim {
		t.Helper()
		c, err := s.Claim(ctx, key, "fp", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Warm up: the scripts are loaded and the clock read.
	c := claim("warm-up")
	if err := s.Complete(ctx, "warm-up", c.Token, []byte("r"), time.Hour); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		key := "k" + string(rune('a'+attempt))
		claim("warm-up") // reads the clock if its reading is a second old
		if !redisstore.ClockFresh(s) {
			if attempt == 10 {
				t.Fatal("the store's reading of the server's clock is never fresh")
			}
			continue
		}
		var got idempotency.Claim
		if trips, cmds := measure(func() { got = claim(key) }); trips != 1 || cmds != 1 || !got.Acquired {
			t.Fatalf("claim of a new key: %d round trips, %d commands, %+v; want 1, 1, acquired", trips, cmds, got)
		}
		if trips, _ := measure(func() {
			if err := s.Complete(ctx, key, got.Token, []byte("response"), time.Hour); err != nil {
				t.Fatal(err)
			}
		}); trips != 1 {
			t.Fatalf("complete: %d round trips; want 1", trips)
		}
		if !redisstore.ClockFresh(s) {
			continue
		}
		pttl, err := rdb.PTTL(ctx, prefix+key).Result()
		if err != nil {
			t.Fatal(err)
		}
		trips, cmds := measure(func() { got = claim(key) })
		if trips != 1 || cmds != 1 {
			t.Fatalf("replay: %d round trips, %d commands; want 1 and 1", trips, cmds)
		}
		if got.Acquired || got.Record.Status != idempotency.StatusCompleted || string(got.Record.Response) != "response" {
			t.Fatalf("replay = %+v; want the completed record", got)
		}
		// Never more than what is left: the key's PTTL, read before.
		if got.Record.TTL <= 0 || got.Record.TTL > pttl+time.Millisecond {
			t.Fatalf("replay: TTL %v; want the retention left, in (0, %v]", got.Record.TTL, pttl)
		}
		return
	}
}

// TestReplayOfARecordCompletedByAnEarlierVersion: a completed record that
// carries no expiry (zeros, as the store's earlier versions wrote it) is
// replayed with the retention left read from the key's PTTL.
func TestReplayOfARecordCompletedByAnEarlierVersion(t *testing.T) {
	t.Parallel()
	rdb, prefix := newClient(t)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Status 2, token 0x2a, no expiry, fingerprint "fp", response "old".
	v := "2" + "000000000000002a" + "0000000000000000" + "02" + "fp" + "old"
	if err := rdb.Set(ctx, prefix+"old", v, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the first claim reads the clock beside, the second not
		c, err := s.Claim(ctx, "old", "fp", time.Minute)
		if err != nil || c.Acquired || c.Record.Status != idempotency.StatusCompleted || string(c.Record.Response) != "old" || c.Record.Token != 0x2a {
			t.Fatalf("claim of a record completed by an earlier version = %+v, %v", c, err)
		}
		if c.Record.TTL <= 59*time.Minute || c.Record.TTL > time.Hour {
			t.Fatalf("TTL %v; want the key's PTTL, about an hour", c.Record.TTL)
		}
	}
}
