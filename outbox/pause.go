package outbox

import (
	"context"
	"time"
)

// Pauses. A destination is paused in the store, once, by the outcome of the
// publish that found it unavailable (backend.Pause): the store's claims skip
// it from then on, for every relay, until the pause ends or an operator
// lifts it (Store.Resume). What a relay must add is for the messages it
// claimed before the pause was recorded: it learns the store's pauses every
// poll interval (at once for the pauses it records itself) and releases,
// unpublished and with their schedule and attempts kept, the messages of a
// paused destination that it claimed before it knew of the pause. A message
// claimed after it knew was claimed by a store that skipped the paused
// destination: the pause has ended or was lifted since, and it is
// published.

// knownPause is a pause as this relay knows it.
type knownPause struct {
	until   time.Time // on this host's clock
	learned time.Time // when this relay first knew of it
}

// notePause records a pause this relay has just asked the store for.
func (r *Relay) notePause(dest string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.paused[dest]
	if !ok || !time.Now().Before(p.until) {
		p.learned = time.Now()
	}
	if until.After(p.until) {
		p.until = until
	}
	r.paused[dest] = p
}

// pausedFor reports whether the messages of dest claimed at claimed must
// not be published now.
func (r *Relay) pausedFor(dest string, claimed time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.paused[dest]
	return ok && time.Now().Before(p.until) && p.learned.After(claimed)
}

// pauseLoop learns the store's pauses every poll interval.
func (r *Relay) pauseLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.pollInterval)
	defer t.Stop()
	for {
		r.refreshPauses(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Relay) refreshPauses(ctx context.Context) {
	asked := time.Now()
	ps, err := r.store.Pauses(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("outbox: reading the paused destinations failed", "err", err)
		}
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[string]knownPause, len(ps))
	for _, p := range ps {
		k, ok := r.paused[p.Destination]
		if !ok || !now.Before(k.until) {
			k.learned = now // not known before: released what was claimed until now
		}
		k.until = p.Until
		next[p.Destination] = k
	}
	for d, k := range r.paused {
		// A pause this relay recorded after it asked may not be in the
		// answer yet.
		if _, ok := next[d]; !ok && k.learned.After(asked) && now.Before(k.until) {
			next[d] = k
		}
	}
	r.paused = next
}
