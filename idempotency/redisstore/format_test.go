package redisstore_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
)

// TestConformanceClaimByScript runs idempotency/storetest with every claim
// made by the store's Lua script, as on a Redis older than 7.0.
func TestConformanceClaimByScript(t *testing.T) {
	rdb, prefix := newClient(t)
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix), redisstore.WithMaxResponseSize(2<<20))
		if err != nil {
			t.Fatal(err)
		}
		redisstore.ClaimByScript(s)
		return storetest.Harness{Store: s, Short: 200 * time.Millisecond, MaxResponseBytes: 2 << 20}
	})
}

// TestRecordsOfTheEarlierFormat: the hashes that the store's earlier
// version wrote are served until they expire: an in-progress one can be
// completed, renewed or released by its holder and is reported to others; a
// completed one is replayed; an abandoned one is taken over (and the key then
// holds a record of the current format).
func TestRecordsOfTheEarlierFormat(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := newClient(t)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	held := func(key string, token int64, lease time.Duration) {
		t.Helper()
		k := prefix + key
		if err := rdb.HSet(ctx, k, "f", "fp", "s", "1", "t", strconv.FormatInt(token, 10), "l", ms(lease)).Err(); err != nil {
			t.Fatal(err)
		}
		rdb.PExpire(ctx, k, lease+time.Hour)
	}

	// In progress under a live lease: reported, then completed by its holder.
	held("live", 42, time.Hour)
	c, err := s.Claim(ctx, "live", "fp", time.Minute)
	if err != nil || c.Acquired || c.Record.Status != idempotency.StatusInProgress || c.Record.Token != 42 || c.Record.TTL < 59*time.Minute {
		t.Fatalf("claim of a live legacy claim = %+v, %v", c, err)
	}
	if err := s.Renew(ctx, "live", 42, 2*time.Hour); err != nil {
		t.Fatalf("renew by the holder: %v", err)
	}
	if err := s.Complete(ctx, "live", 41, []byte("x"), time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("complete with another token = %v", err)
	}
	if err := s.Complete(ctx, "live", 42, []byte("done"), time.Hour); err != nil {
		t.Fatalf("complete by the holder: %v", err)
	}
	c, err = s.Claim(ctx, "live", "fp", time.Minute)
	if err != nil || c.Acquired || c.Record.Status != idempotency.StatusCompleted || string(c.Record.Response) != "done" {
		t.Fatalf("claim of a completed legacy record = %+v, %v", c, err)
	}
	if r, err := s.Get(ctx, "live"); err != nil || r.Status != idempotency.StatusCompleted || string(r.Response) != "done" || r.TTL < 59*time.Minute {
		t.Fatalf("get of a completed legacy record = %+v, %v", r, err)
	}

	// Released by its holder; force-released by an operator.
	held("rel", 7, time.Hour)
	if err := s.Release(ctx, "rel", 8); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("release with another token = %v", err)
	}
	if err := s.Release(ctx, "rel", 7); err != nil {
		t.Fatal(err)
	}
	held("force", 7, time.Hour)
	if err := s.ForceRelease(ctx, "force"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rel", "force"} {
		if _, err := s.Get(ctx, k); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("get of %s after release = %v", k, err)
		}
	}

	// Abandoned (lease over): another fingerprint gets the record, the same
	// one takes it over, and the key holds a record of today's format.
	held("dead", 9, -time.Second)
	c, err = s.Claim(ctx, "dead", "other", time.Minute)
	if err != nil || c.Acquired || c.Record.Fingerprint != "fp" || c.Record.TTL != 0 {
		t.Fatalf("claim of an abandoned legacy claim with another fingerprint = %+v, %v", c, err)
	}
	c, err = s.Claim(ctx, "dead", "fp", time.Minute)
	if err != nil || !c.Acquired {
		t.Fatalf("takeover of an abandoned legacy claim = %+v, %v", c, err)
	}
	if typ := rdb.Type(ctx, prefix+"dead").Val(); typ != "string" {
		t.Fatalf("the key holds a %s after the takeover", typ)
	}
	if err := s.Complete(ctx, "dead", c.Token, []byte("new"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, "dead"); err != nil || string(r.Response) != "new" {
		t.Fatalf("get after the takeover = %+v, %v", r, err)
	}
}

// TestClaimSeesItsOwnRecord: a claim whose command ran but whose answer was
// lost is sent again by the client; the store recognises its own claim by
// its token.
func TestClaimSeesItsOwnRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	for _, byScript := range []bool{false, true} {
		if byScript {
			redisstore.ClaimByScript(s)
		}
		key := "own-" + strconv.FormatBool(byScript)
		c, err := redisstore.ClaimTwice(ctx, s, key, "fp", time.Minute)
		if err != nil || !c.Acquired {
			t.Fatalf("claim sent twice (script %v) = %+v, %v; want acquired", byScript, c, err)
		}
		if err := s.Complete(ctx, key, c.Token, []byte("r"), time.Hour); err != nil {
			t.Fatalf("complete with the claim's token: %v", err)
		}
	}
}
