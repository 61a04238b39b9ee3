package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// remote hides a MemoryStore's type, so that the middleware and Do treat it
// as they treat a durable store: they renew its leases on a timer.
type remote struct{ idempotency.Store }

// leaseStores returns the stores the lease tests run on: a MemoryStore,
// whose claims the middleware and Do hold while the work runs, and the same
// store as any other Store, whose leases they renew.
func leaseStores(t *testing.T) map[string]func() (idempotency.Store, *idempotency.MemoryStore) {
	return map[string]func() (idempotency.Store, *idempotency.MemoryStore){
		"memory": func() (idempotency.Store, *idempotency.MemoryStore) { s := newStore(t); return s, s },
		"renewed": func() (idempotency.Store, *idempotency.MemoryStore) {
			s := newStore(t)
			return remote{s}, s
		},
	}
}

// A Do slower than the lease is not taken over, whether its claim is held
// (MemoryStore) or renewed (any other store); waiters see the lease left.
func TestDoSlowWorkKeepsItsClaim(t *testing.T) {
	t.Parallel()
	for name, stores := range leaseStores(t) {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store, mem := stores()
				r := newRunner(t, store, idempotency.WithLease(time.Second))
				ctx := context.Background()
				done := make(chan error)
				go func() {
					_, err := idempotency.Do(ctx, r, "slow", func(context.Context) (int, error) {
						time.Sleep(10 * time.Second)
						return 1, nil
					})
					done <- err
				}()
				time.Sleep(5 * time.Second) // five leases
				c, err := mem.Claim(ctx, "slow", "", time.Second)
				if err != nil || c.Acquired || c.Record.TTL <= 0 {
					t.Fatalf("claim of a running key after five leases = %+v, %v; want it held with lease left", c, err)
				}
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// A held claim whose result the MemoryStore refuses to keep (no room for
// the result nor for the marker that says so) is no longer held once the
// work ended: its lease runs out as a renewed lease would once renewals
// stop, and a later call runs the work again, as on a durable store whose
// completion failed, instead of finding the key in progress for good.
func TestDoUnstoredResultLeaseRunsOut(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// Room for the claim of "k" (key, empty fingerprint and the
		// per-record overhead of 128 bytes) and not a byte more.
		store := newStore(t, idempotency.WithMaxBytes(1+128), idempotency.WithMaxScopeShare(1))
		r := newRunner(t, store, idempotency.WithLease(time.Second), idempotency.WithWait(time.Minute))
		ctx := context.Background()
		var runs atomic.Int64
		fn := func(context.Context) (int64, error) { return runs.Add(1), nil }
		if got, err := idempotency.Do(ctx, r, "k", fn); got != 1 || !errors.Is(err, idempotency.ErrNotStored) {
			t.Fatalf("first Do = %d, %v; want 1 and ErrNotStored", got, err)
		}
		start := time.Now()
		if got, _ := idempotency.Do(ctx, r, "k", fn); got != 2 {
			t.Fatalf("second Do = %d; want the work run again once the lease ran out", got)
		}
		if waited := time.Since(start); waited < time.Second || waited > 2*time.Second {
			t.Fatalf("the second Do waited %v; want about the lease (1s)", waited)
		}
	})
}

// The same for the middleware: a response that cannot be stored leaves the
// key to be claimed again once the lease runs out, not in progress for good.
func TestMiddlewareUnstoredResponseLeaseRunsOut(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		skey := idempotency.ScopedKey("", http.MethodPost, "/x", "k")
		store := newStore(t, idempotency.WithMaxBytes(int64(len(skey)+64+128)), idempotency.WithMaxScopeShare(1))
		h := &counting{}
		srv := newMiddleware(t, store, idempotency.WithLease(time.Second))(h)
		if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusCreated {
			t.Fatalf("first request: %d %s", w.Code, w.Body)
		}
		wantProblem(t, serve(srv, request("/x", "k", "b")), idempotency.ProblemInProgress)
		time.Sleep(2 * time.Second)
		if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusCreated || h.runs.Load() != 2 {
			t.Fatalf("request after the lease: %d %s, %d runs; want the handler run again", w.Code, w.Body, h.runs.Load())
		}
	})
}
