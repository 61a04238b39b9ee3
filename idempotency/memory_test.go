package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// newFakeStore returns a memory store for a test that runs in a synctest
// bubble, whose clock moves only when every goroutine waits.
func newFakeStore(t testing.TB, opts ...idempotency.Option) *idempotency.MemoryStore {
	t.Helper()
	s, err := idempotency.NewMemoryStore(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewMemoryStoreOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    []idempotency.Option
		wantErr string
	}{
		{"defaults", nil, ""},
		{"unbounded", []idempotency.Option{idempotency.WithMaxRecords(0)}, ""},
		{"negative max", []idempotency.Option{idempotency.WithMaxRecords(-1)}, "WithMaxRecords"},
		{"option of another constructor", []idempotency.Option{idempotency.WithLease(time.Minute)}, "WithLease applies to Middleware and NewRunner and Do, not NewMemoryStore"},
		{"nil option", []idempotency.Option{nil}, "option 0 is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := idempotency.NewMemoryStore(tt.opts...)
			if tt.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("NewMemoryStore = %v, %v; want a store", s, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewMemoryStore error = %v; want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestMemoryStoreFull(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newFakeStore(t, idempotency.WithMaxRecords(3))

		// Three records: two completed with a short retention, one in progress.
		for i := range 2 {
			k := fmt.Sprint("done", i)
			c, err := s.Claim(ctx, k, "fp", time.Minute)
			if err != nil || !c.Acquired {
				t.Fatalf("Claim(%s) = %+v, %v", k, c, err)
			}
			if err := s.Complete(ctx, k, c.Token, []byte(k), time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := s.Claim(ctx, "running", "fp", 2*time.Hour); err != nil || !c.Acquired {
			t.Fatalf("Claim(running) = %+v, %v", c, err)
		}

		// Full: a new key is refused, stored ones still replay.
		if _, err := s.Claim(ctx, "new", "fp", time.Minute); !errors.Is(err, idempotency.ErrStoreFull) {
			t.Fatalf("Claim of a new key in a full store: %v; want ErrStoreFull", err)
		}
		c, err := s.Claim(ctx, "done1", "fp", time.Minute)
		if err != nil || c.Acquired || string(c.Record.Response) != "done1" {
			t.Fatalf("Claim of a stored key in a full store = %+v, %v; want its record", c, err)
		}
		if idempotency.Len(s) != 3 {
			t.Fatalf("Len = %d; want 3 (nothing evicted)", idempotency.Len(s))
		}

		// Once the completed records expire, the refused claim's purge frees room;
		// the in-progress record, whose lease still runs, is kept.
		time.Sleep(90 * time.Minute)
		c, err = s.Claim(ctx, "new", "fp", time.Minute)
		if err != nil || !c.Acquired {
			t.Fatalf("Claim after records expired = %+v, %v; want acquired", c, err)
		}
		if r, err := s.Get(ctx, "running"); err != nil || r.Status != idempotency.StatusInProgress {
			t.Fatalf("live in-progress record was evicted: %+v, %v", r, err)
		}
		// The claim found room by sweeping its own shard, or by the purge: an
		// expired record in another shard may still be counted until a purge.
		if _, err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		if idempotency.Len(s) != 2 {
			t.Fatalf("Len after Purge = %d; want 2 (running and new)", idempotency.Len(s))
		}
	})
}

func TestMemoryStorePurge(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newFakeStore(t, idempotency.WithMaxRecords(0))
		claim := func(k string, lease time.Duration) int64 {
			t.Helper()
			c, err := s.Claim(ctx, k, "fp", lease)
			if err != nil || !c.Acquired {
				t.Fatalf("Claim(%s) = %+v, %v", k, c, err)
			}
			return c.Token
		}
		// completed, retention 1h; abandoned, lease 1m; live, lease 3h.
		if err := s.Complete(ctx, "completed", claim("completed", time.Minute), nil, time.Hour); err != nil {
			t.Fatal(err)
		}
		claim("abandoned", time.Minute)
		claim("live", 3*time.Hour)
		if n, err := s.Purge(ctx); err != nil || n != 0 {
			t.Fatalf("Purge before anything expired = %d, %v; want 0", n, err)
		}
		time.Sleep(2 * time.Hour)
		// An abandoned claim is still visible until it is purged or taken over.
		if r, err := s.Get(ctx, "abandoned"); err != nil || r.Status != idempotency.StatusInProgress {
			t.Fatalf("Get(abandoned) = %+v, %v", r, err)
		}
		if n, err := s.Purge(ctx); err != nil || n != 2 {
			t.Fatalf("Purge = %d, %v; want 2", n, err)
		}
		for k, want := range map[string]error{"completed": idempotency.ErrNotFound, "abandoned": idempotency.ErrNotFound, "live": nil} {
			if _, err := s.Get(ctx, k); !errors.Is(err, want) {
				t.Errorf("Get(%s) after Purge: %v; want %v", k, err, want)
			}
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Purge(cancelled); !errors.Is(err, context.Canceled) {
			t.Fatalf("Purge with a cancelled context: %v", err)
		}
	})
}

// Claims that insert sweep expired records lazily: memory stays bounded by
// the live records without Purge or Run.
func TestMemoryStoreLazySweep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newFakeStore(t, idempotency.WithMaxRecords(0))
		const n = 2000
		for i := range n {
			k := fmt.Sprint("old", i)
			c, err := s.Claim(ctx, k, "fp", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Complete(ctx, k, c.Token, nil, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Hour)
		for i := range 4 * n {
			if _, err := s.Claim(ctx, fmt.Sprint("new", i), "fp", time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		if got := idempotency.Len(s); got >= 4*n+n/2 {
			t.Fatalf("Len = %d after %d new claims over %d expired records; the lazy sweep removed almost nothing", got, 4*n, n)
		}
	})
}

func TestMemoryStoreRun(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newFakeStore(t)
		ctx := context.Background()
		if _, err := s.Claim(ctx, "k", "fp", time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- s.Run(ctx, time.Millisecond) }()
		for idempotency.Len(s) != 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v; want context.Canceled", err)
		}
		if err := s.Run(context.Background(), 0); err == nil {
			t.Fatal("Run with a zero interval returned nil")
		}
	})
}

func TestMemoryStoreBadArguments(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newFakeStore(t)
		ctx := context.Background()
		if _, err := s.Claim(ctx, "k", "fp", 0); err == nil {
			t.Error("Claim with a zero lease returned nil")
		}
		c, err := s.Claim(ctx, "k", "fp", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Renew(ctx, "k", c.Token, -time.Second); err == nil {
			t.Error("Renew with a negative lease returned nil")
		}
		if err := s.Complete(ctx, "k", c.Token, nil, 0); err == nil {
			t.Error("Complete with a zero retention returned nil")
		}
	})
}

// Concurrent claims of new keys never push the store over its bound.
func TestMemoryStoreBoundExact(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newFakeStore(t, idempotency.WithMaxRecords(10))
		var wg sync.WaitGroup
		var acquired atomic.Int64
		for i := range 200 {
			wg.Go(func() {
				c, err := s.Claim(ctx, fmt.Sprint("k", i), "fp", time.Hour)
				if err == nil && c.Acquired {
					acquired.Add(1)
				} else if !errors.Is(err, idempotency.ErrStoreFull) {
					t.Errorf("Claim: %+v, %v", c, err)
				}
			})
		}
		wg.Wait()
		if acquired.Load() != 10 || idempotency.Len(s) != 10 {
			t.Fatalf("%d claims acquired, %d records held; want 10 and 10", acquired.Load(), idempotency.Len(s))
		}
	})
}

// Random concurrent operations keep the record count exact: once every
// record has expired, Purge leaves an empty store.
func TestMemoryStoreConcurrentOps(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newFakeStore(t, idempotency.WithMaxRecords(0))
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 500 {
					k := fmt.Sprint("k", (g*7+i)%20)
					switch i % 6 {
					case 0, 1:
						c, err := s.Claim(ctx, k, "fp", time.Duration(1+i%3)*time.Minute)
						if err != nil {
							t.Error(err)
							return
						}
						if c.Acquired {
							switch i % 3 {
							case 0:
								_ = s.Complete(ctx, k, c.Token, []byte(k), time.Duration(1+i%4)*time.Minute)
							case 1:
								_ = s.Release(ctx, k, c.Token)
							}
						}
					case 2:
						_, _ = s.Get(ctx, k)
					case 3:
						_, _ = s.Purge(ctx)
					case 4:
						time.Sleep(time.Second)
					case 5:
						if r, err := s.Get(ctx, k); err == nil {
							_ = s.Renew(ctx, k, r.Token, time.Minute)
						}
					}
				}
			})
		}
		wg.Wait()
		time.Sleep(time.Hour)
		if _, err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		if n := idempotency.Len(s); n != 0 {
			t.Fatalf("Len = %d after everything expired and was purged; the count drifted", n)
		}
	})
}

// The store's sweep order agrees with its map through every kind of
// change: claims (new, taken over), renewals, completions, releases, the
// lazy sweep and purges, with time passing.
func TestMemoryStoreSweepOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := newFakeStore(t, idempotency.WithMaxRecords(0))
		tokens := map[string]int64{}
		rnd := rand.New(rand.NewPCG(1, 2))
		completed := 0
		for i := range 5000 {
			k := fmt.Sprint("k", rnd.IntN(300))
			switch op := rnd.IntN(10); {
			case op < 4:
				c, err := s.Claim(ctx, k, "fp", time.Duration(1+rnd.IntN(3))*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if c.Acquired {
					tokens[k] = c.Token
				}
			case op < 6:
				for k, tok := range tokens { // a random key that was claimed
					if s.Complete(ctx, k, tok, []byte(k), time.Duration(1+rnd.IntN(5))*time.Second) == nil {
						completed++
					}
					delete(tokens, k)
					break
				}
			case op == 6:
				for k, tok := range tokens {
					_ = s.Release(ctx, k, tok)
					delete(tokens, k)
					break
				}
			case op == 7:
				for k, tok := range tokens {
					_ = s.Renew(ctx, k, tok, 2*time.Second)
					break
				}
			case op == 8 && rnd.IntN(20) == 0:
				if _, err := s.Purge(ctx); err != nil {
					t.Fatal(err)
				}
			default:
				time.Sleep(100 * time.Millisecond)
			}
			if err := idempotency.CheckMemoryStore(s); err != nil {
				t.Fatalf("after op %d: %v", i, err)
			}
		}
		if completed < 100 {
			t.Fatalf("only %d completions: the test does not test them", completed)
		}
		time.Sleep(time.Minute)
		if _, err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		if n := idempotency.Len(s); n != 0 {
			t.Fatalf("Len = %d after everything expired and was purged", n)
		}
		if err := idempotency.CheckMemoryStore(s); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMemoryStoreLongDurations: leases and retentions up to the longest
// Duration ("forever") neither overflow the store's clock nor expire at
// once.
func TestMemoryStoreLongDurations(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newFakeStore(t)
		ctx := context.Background()
		const forever = time.Duration(1<<63 - 1)
		c, err := s.Claim(ctx, "k", "fp", forever)
		if err != nil || !c.Acquired {
			t.Fatalf("Claim = %+v, %v", c, err)
		}
		time.Sleep(time.Hour)
		if c2, err := s.Claim(ctx, "k", "fp", time.Minute); err != nil || c2.Acquired || c2.Record.TTL <= 0 {
			t.Fatalf("Claim of a key held for ever = %+v, %v; want it in progress, its lease left", c2, err)
		}
		if err := s.Complete(ctx, "k", c.Token, []byte("r"), forever); err != nil {
			t.Fatal(err)
		}
		time.Sleep(24 * time.Hour)
		rec, err := s.Get(ctx, "k")
		if err != nil || rec.Status != idempotency.StatusCompleted || rec.TTL <= 0 || string(rec.Response) != "r" {
			t.Fatalf("Get = %+v, %v; want the completed record, kept", rec, err)
		}
		if n, _ := s.Purge(ctx); n != 0 {
			t.Fatalf("Purge removed %d records; want none", n)
		}
	})
}
