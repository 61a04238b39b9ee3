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
	// unwritten counts the write-backs of this relay that record the pause
	// and have not finished; written is when the last one finished. Until
	// then the store's answer may not show the pause yet (see
	// refreshPauses).
	unwritten int
	written   time.Time
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
	p.unwritten++
	r.paused[dest] = p
}

// pausesWritten records that a write-back recording the pauses of dests
// (one entry per Pause outcome) has finished.
func (r *Relay) pausesWritten(dests []string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range dests {
		if p, ok := r.paused[d]; ok {
			p.unwritten = max(p.unwritten-1, 0)
			p.written = now
			r.paused[d] = p
		}
	}
}

// pausedFor reports whether the messages of dest claimed at claimed must
// not be published now.
func (r *Relay) pausedFor(dest string, claimed time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.paused[dest]
	// A claim sent at the very time the pause was learned is taken as sent
	// before (a coarse clock, or synctest's, shows both at once): a claim
	// sent after excluded dest, so releasing its messages loses nothing.
	return ok && time.Now().Before(p.until) && !p.learned.Before(claimed)
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
		// A pause this relay learned after it asked, or whose write-back
		// had not finished when it asked, may not be in the answer yet.
		if _, ok := next[d]; !ok && now.Before(k.until) &&
			(k.learned.After(asked) || k.unwritten > 0 || k.written.After(asked)) {
			next[d] = k
		}
	}
	r.paused = next
}
