package redisstore_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
)

// The benchmarks compare the store with the least a correct hand-written
// client sends for the same job, with go-redis on the same pool, 16
// concurrent callers: for a new key, one Lua script that claims the key
// (SET NX with a lease, or the value already there) and, to complete it,
// one that sets the response if the claim's token still holds; for a
// replay, one GET. Each side runs alone (durabletest.Standalone): 15
// rounds of 300ms per side, the order alternating, so that both sides see
// the same weather on a shared machine; the ratios are the store's
// throughput over the baseline's in the same round, as a median with its
// range, read from the wall clock (store/lua) and from CPU time
// (store/lua-by-cpu: this process's and Redis's CPU time per operation,
// from getrusage and INFO cpu, the baseline's over the store's; client and
// server share the machine's CPUs, so that ratio bounds the throughput's,
// and other work on the machine moves it far less). Allocations per
// operation are reported beside.
//
//	go test -run '^$' -bench . -benchtime 1x ./idempotency/redisstore/

// rawClaim claims KEYS[1] with the token ARGV[1] for ARGV[2] ms, or
// returns the value it holds: one round trip either way.
var rawClaim = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return redis.call('GET', KEYS[1])
`)

// rawComplete stores ARGV[2] under KEYS[1] for ARGV[3] ms if the key still
// holds the token ARGV[1].
var rawComplete = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

var benchResp = []byte(`{"id":"ord_123","status":"created"}`)

func keyGen() func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "bench-" + hex.EncodeToString(b[:]) + "-"
	var n atomic.Int64
	return func() string { return prefix + strconv.FormatInt(n.Add(1), 10) }
}

// serverCPU reads Redis's cumulative CPU time (user and system).
func serverCPU(rdb *redis.Client) func() (time.Duration, error) {
	return func() (time.Duration, error) {
		info, err := rdb.Info(context.Background(), "cpu").Result()
		if err != nil {
			return 0, err
		}
		var total float64
		sc := bufio.NewScanner(strings.NewReader(info))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
			if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, fmt.Errorf("INFO cpu %s: %v", k, err)
				}
				total += f
			}
		}
		return time.Duration(total * float64(time.Second)), nil
	}
}

func benchStore(b *testing.B) (*redis.Client, string, *redisstore.Store) {
	rdb, prefix := newClient(b)
	s, err := redisstore.New(rdb, redisstore.WithPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	return rdb, prefix, s
}

// BenchmarkClaimNew: the claim of a key never seen, one round trip on each
// side (the store's Claim; one Lua script).
func BenchmarkClaimNew(b *testing.B) {
	rdb, prefix, s := benchStore(b)
	next := keyGen()
	durabletest.Standalone{Server: serverCPU(rdb), Round: 300 * time.Millisecond, Rounds: 15}.Run(b,
		durabletest.Side{Name: "lua", Op: func(ctx context.Context) error {
			return rawClaim.Run(ctx, rdb, []string{prefix + next()}, "123456789", 60000).Err()
		}},
		durabletest.Side{Name: "store", Op: func(ctx context.Context) error {
			c, err := s.Claim(ctx, next(), "fp", time.Minute)
			if err == nil && !c.Acquired {
				err = fmt.Errorf("new key not acquired: %+v", c)
			}
			return err
		}},
	)
}

// BenchmarkNewKey: a new key's whole life, claimed then completed with a
// response kept for 24 hours: two round trips on each side (Claim and
// Complete; two Lua scripts).
func BenchmarkNewKey(b *testing.B) {
	rdb, prefix, s := benchStore(b)
	next := keyGen()
	durabletest.Standalone{Server: serverCPU(rdb), Round: 300 * time.Millisecond, Rounds: 15}.Run(b,
		durabletest.Side{Name: "lua", Op: func(ctx context.Context) error {
			k := []string{prefix + next()}
			if err := rawClaim.Run(ctx, rdb, k, "123456789", 60000).Err(); err != nil {
				return err
			}
			return rawComplete.Run(ctx, rdb, k, "123456789", benchResp, 24*3600*1000).Err()
		}},
		durabletest.Side{Name: "store", Op: durabletest.NewKey(s, next, benchResp)},
	)
}

// BenchmarkReplay: a completed key read back, one round trip on each side:
// the store's Claim (what a duplicate request does) and Get, against one
// GET of the same response.
func BenchmarkReplay(b *testing.B) {
	rdb, prefix, s := benchStore(b)
	ctx := context.Background()
	const keys = 256
	for i := 0; i < keys; i++ {
		k := "replay-" + strconv.Itoa(i)
		c, err := s.Claim(ctx, k, "fp", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Complete(ctx, k, c.Token, benchResp, time.Hour); err != nil {
			b.Fatal(err)
		}
		if err := rdb.Set(ctx, prefix+"plain-"+k, benchResp, time.Hour).Err(); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	key := func() string { return "replay-" + strconv.Itoa(int(n.Add(1)%keys)) }
	durabletest.Standalone{Server: serverCPU(rdb), Round: 300 * time.Millisecond, Rounds: 15}.Run(b,
		durabletest.Side{Name: "get", Op: func(ctx context.Context) error {
			return rdb.Get(ctx, prefix+"plain-"+key()).Err()
		}},
		durabletest.Side{Name: "claim", Op: func(ctx context.Context) error {
			c, err := s.Claim(ctx, key(), "fp", time.Minute)
			if err == nil && (c.Acquired || len(c.Record.Response) != len(benchResp)) {
				err = fmt.Errorf("replay claim = %+v", c)
			}
			return err
		}},
		durabletest.Side{Name: "record", Op: func(ctx context.Context) error {
			_, err := s.Get(ctx, key())
			return err
		}},
	)
}
