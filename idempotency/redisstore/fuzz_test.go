package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
)

// FuzzForeignRecord: whatever hash another program left under the store's
// prefix, Get and Claim return a record this store could have written or an
// error; they never panic and never take the key.
func FuzzForeignRecord(f *testing.F) {
	rdb, prefix := newClient(f)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("fp", "2", "42", "0", "1767225600000", "resp")
	f.Add("fp", "1", "-1", "1e99", "", "")
	f.Add("", "3", "x", "-5", "9999999999999999999999", "\x00")
	f.Fuzz(func(t *testing.T, fp, st, tok, lease, exp, resp string) {
		ctx := context.Background()
		const key = "foreign"
		rdb.Del(ctx, prefix+key)
		rdb.HSet(ctx, prefix+key, "f", fp, "s", st, "t", tok, "l", lease, "e", exp, "r", resp)
		if rec, err := s.Get(ctx, key); err == nil {
			if rec.Status != idempotency.StatusInProgress && rec.Status != idempotency.StatusCompleted {
				t.Fatalf("Get returned status %v", rec.Status)
			}
		}
		c, err := s.Claim(ctx, key, fp+"-other", 1<<62)
		if err == nil && c.Acquired && st == "2" {
			t.Fatalf("Claim took over a completed record: %+v", c)
		}
	})
}

// FuzzForeignValue: whatever string another program left under the store's
// prefix, with or without an expiry, Get and Claim return a record this
// store could have written or an error; they never panic, and never take a
// key whose value says it is completed.
func FuzzForeignValue(f *testing.F) {
	rdb, prefix := newClient(f)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("1000000000000002a0000000000000000"+"02fp", int64(1000))
	f.Add("2000000000000002a0000000000000000"+"02fpresponse", int64(0))
	f.Add("1zzzzzzzzzzzzzzzz0000000000000000"+"ffx", int64(-1))
	f.Add("", int64(5))
	f.Fuzz(func(t *testing.T, v string, ttlMs int64) {
		ctx := context.Background()
		const key = "foreign"
		rdb.Del(ctx, prefix+key)
		ttl := time.Duration(ttlMs%100000) * time.Millisecond
		if ttl <= 0 {
			ttl = 0 // no expiry
		}
		rdb.Set(ctx, prefix+key, v, ttl)
		if rec, err := s.Get(ctx, key); err == nil {
			if rec.Status != idempotency.StatusInProgress && rec.Status != idempotency.StatusCompleted {
				t.Fatalf("Get returned status %v", rec.Status)
			}
			if rec.TTL < 0 {
				t.Fatalf("Get returned TTL %v", rec.TTL)
			}
		}
		for _, fp := range []string{"fp", "other"} {
			c, err := s.Claim(ctx, key, fp, time.Hour)
			if err == nil && c.Acquired && len(v) > 0 && v[0] == '2' {
				t.Fatalf("Claim took over a completed record %q: %+v", v, c)
			}
		}
	})
}
