package idempotency

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// renewal renews a claim's lease every third of the lease while the work
// runs. It runs on a timer, so that work that ends before the first renewal
// costs no goroutine; stop cancels and waits for a renewal in progress. Its
// owner is the call that started it, which must call stop. A renewal whose
// timer never fired goes back to its pool, so that short work allocates
// only its timer. (The timer is not reused: it belongs to the synctest
// bubble, if any, of the goroutine that made it.)
type renewal struct {
	pool  *sync.Pool
	fire  func() // r.renew, bound once
	timer *time.Timer

	mu     sync.Mutex
	parent context.Context
	store  Store
	key    string
	token  int64
	lease  time.Duration
	logger *slog.Logger
	// fired is set once the timer has fired: renew may still run, so the
	// renewal is never reused.
	fired   bool
	stopped bool
	lost    bool
	cancel  context.CancelFunc // of the renewal in progress
	running sync.WaitGroup
}

// claimKey claims key in store for work that runs now, in this process,
// under a renewal from startRenewal. A MemoryStore's claim is held while
// the work runs instead (claimHeld): no renewal is needed, and none runs.
func claimKey(ctx context.Context, store Store, key, fp string, lease time.Duration) (Claim, error) {
	if m, ok := store.(*MemoryStore); ok {
		return m.claimHeld(ctx, key, fp, lease)
	}
	return store.Claim(ctx, key, fp, lease)
}

// unhold ends the hold of a claim taken by claimKey whose work ended
// without the store completing or releasing it: on a MemoryStore, its lease
// then runs out as a renewed lease would once renewals stop.
func unhold(store Store, key string, token int64) {
	if m, ok := store.(*MemoryStore); ok {
		m.unhold(key, token)
	}
}

// startRenewal starts renewing the claim of key held with token, taken by
// claimKey, with a renewal from pool (of *renewal). It returns nil for a
// MemoryStore, whose claim needs none; stop is a no-op on nil.
func startRenewal(ctx context.Context, pool *sync.Pool, store Store, key string, token int64, lease time.Duration, logger *slog.Logger) *renewal {
	if _, ok := store.(*MemoryStore); ok {
		return nil
	}
	r, _ := pool.Get().(*renewal)
	if r == nil {
		r = &renewal{pool: pool}
		r.fire = r.renew
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.parent, r.store, r.key, r.token, r.lease, r.logger = ctx, store, key, token, lease, logger
	r.stopped, r.lost = false, false
	r.timer = time.AfterFunc(lease/3, r.fire)
	return r
}

func (r *renewal) renew() {
	r.mu.Lock()
	r.fired = true
	if r.stopped {
		r.mu.Unlock()
		return
	}
	// The renewal outlives a caller that went away: the work still runs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.parent), r.lease/3)
	r.cancel = cancel
	r.running.Add(1)
	r.mu.Unlock()
	defer r.running.Done()

	err := r.store.Renew(ctx, r.key, r.token, r.lease)
	cancel()

	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel = nil
	switch {
	case r.stopped:
		return
	case errors.Is(err, ErrLeaseLost):
		r.lost = true
		r.logger.Warn("idempotency: lease lost while the work ran; another claimer may run it too", "key", r.key)
		return
	case err != nil:
		// Try again at the next tick: the lease has two thirds to go.
		r.logger.Warn("idempotency: renewing a lease failed", "key", r.key, "error", err)
	}
	r.timer.Reset(r.lease / 3)
}

// stop ends the renewals, cancels and waits for one in progress, and
// reports whether the lease was found lost. The renewal must not be used
// after.
func (r *renewal) stop() (lost bool) {
	if r == nil {
		return false
	}
	r.mu.Lock()
	r.stopped = true
	// A timer stopped before it fired never calls renew: nothing else
	// refers to r, which can be reused.
	reusable := r.timer.Stop() && !r.fired
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	r.running.Wait()
	r.mu.Lock()
	lost = r.lost
	if reusable {
		r.parent, r.store, r.logger, r.timer = nil, nil, nil, nil
	}
	r.mu.Unlock()
	if reusable {
		r.pool.Put(r)
	}
	return lost
}
