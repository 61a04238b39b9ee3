package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
)

// The benchmarks compare the store with the minimal commands for the job
// issued by hand with go-redis, in the same run, with 16 concurrent callers:
// two SETs (SET NX, then SET of the response) for a new key, one GET for a
// replay. The store and the baseline run alternately from the same callers
// (paired), so that both see the same load: each reports its mean latency
// (base-ns/op, store-ns/op) and store/base, whose inverse is the store's
// share of the baseline's throughput.
//
//	go test -run '^$' -bench . -benchtime 3s ./idempotency/redisstore/

func parallel(b *testing.B, f func(ctx context.Context) error) {
	b.Helper()
	b.ReportAllocs()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := f(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func keyGen() func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "bench-" + hex.EncodeToString(b[:]) + "-"
	var n atomic.Int64
	return func() string { return prefix + strconv.FormatInt(n.Add(1), 10) }
}

func BenchmarkNewKey(b *testing.B) {
	rdb, prefix := newClient(b)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	resp := []byte(`{"id":"ord_123","status":"created"}`)
	next := keyGen()
	durabletest.Paired(b, 16, func(ctx context.Context) error {
		k := prefix + next()
		if err := rdb.SetNX(ctx, k, "in-progress", time.Minute).Err(); err != nil {
			return err
		}
		return rdb.Set(ctx, k, resp, 24*time.Hour).Err()
	}, durabletest.NewKey(s, next, resp))
}

func BenchmarkReplay(b *testing.B) {
	rdb, prefix := newClient(b)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	resp := []byte(`{"id":"ord_123","status":"created"}`)
	const keys = 256
	for i := 0; i < keys; i++ {
		k := "replay-" + strconv.Itoa(i)
		c, err := s.Claim(ctx, k, "fp", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Complete(ctx, k, c.Token, resp, time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := rdb.Set(ctx, prefix+"plain-"+k, resp, time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	key := func() string { return "replay-" + strconv.Itoa(int(n.Add(1)%keys)) }
	get := func(ctx context.Context) error { return rdb.Get(ctx, prefix+"plain-"+key()).Err() }
	b.Run("claim", func(b *testing.B) {
		durabletest.Paired(b, 16, get, func(ctx context.Context) error { _, err := s.Claim(ctx, key(), "fp", time.Minute); return err })
	})
	b.Run("get", func(b *testing.B) {
		durabletest.Paired(b, 16, get, func(ctx context.Context) error { _, err := s.Get(ctx, key()); return err })
	})
}
