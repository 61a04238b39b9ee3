package breaker

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"
)

// Group holds one [Breaker] per key (a host, a tenant, an endpoint: the
// caller chooses), made on first use with the group's options. The number of
// breakers is bounded ([WithMaxBreakers]): when a new key arrives and the
// group is full, the least recently used breaker that is closed, not held
// open by the shared state and has no call in flight is dropped (it had
// nothing to protect against); if every breaker is busy, open or half-open,
// Get fails with [ErrGroupFull] rather than forget a tripped circuit.
// Recency is a stamp from a counter that moves only when a different breaker
// than the last one is used, so a group that serves one hot key writes
// nothing shared on its call path.
//
// A Group is safe for concurrent use.
type Group struct {
	cfg   config
	ins   *instruments
	epoch atomic.Uint64 // recency counter; each breaker keeps the stamp of its last use

	mu sync.RWMutex
	m  map[string]*Breaker
}

// NewGroup returns an empty group whose breakers are made with opts: any
// option of a breaker, and WithMaxBreakers (default 1024 breakers). It
// returns an error naming the option at fault when an option is nil, applies
// to NewTransport only (WithKeyFunc, WithFallback) or makes no sense.
func NewGroup(opts ...Option) (*Group, error) {
	cfg, err := newConfig(ctorGroup, opts)
	if err != nil {
		return nil, err
	}
	return newGroup(ctorGroup, cfg)
}

func newGroup(ctor string, cfg config) (*Group, error) {
	ins, err := newInstruments(cfg.meter)
	if err != nil {
		return nil, fmt.Errorf("breaker: %s: metric instruments: %w", ctor, err)
	}
	return &Group{cfg: cfg, ins: ins, m: make(map[string]*Breaker)}, nil
}

// Get returns the breaker of key, making it if there is none. It fails only
// with [ErrGroupFull].
func (g *Group) Get(key string) (*Breaker, error) {
	g.mu.RLock()
	b := g.m[key]
	g.mu.RUnlock()
	if b != nil {
		if b.lastUsed.Load() != g.epoch.Load() {
			b.lastUsed.Store(g.epoch.Add(1))
		}
		return b, nil
	}
	return g.create(key)
}

func (g *Group) create(key string) (*Breaker, error) {
	g.mu.Lock()
	if b := g.m[key]; b != nil {
		g.mu.Unlock()
		return b, nil
	}
	var evicted *Breaker
	if len(g.m) >= g.cfg.maxBreakers {
		evicted = g.victim()
		if evicted == nil {
			g.mu.Unlock()
			return nil, ErrGroupFull
		}
		delete(g.m, evicted.name)
	}
	b := newBreaker(key, &g.cfg, g.ins, true)
	b.lastUsed.Store(g.epoch.Add(1))
	g.m[key] = b
	g.mu.Unlock()
	if s := g.cfg.syncer; s != nil {
		if evicted != nil {
			s.Unregister(evicted.member)
		}
		s.Register(b.member)
	}
	return b, nil
}

// victim returns the least recently used evictable breaker, or nil.
// g.mu is held.
func (g *Group) victim() *Breaker {
	var v *Breaker
	for _, b := range g.m {
		if b.inflight.Load() != 0 || b.hold.Load() != nil || b.cb.State() != gobreaker.StateClosed {
			continue
		}
		if v == nil || b.lastUsed.Load() < v.lastUsed.Load() {
			v = b
		}
	}
	return v
}

// Len returns the number of breakers in the group.
func (g *Group) Len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.m)
}

// Lookup returns the breaker of key if the group has one; it makes none.
func (g *Group) Lookup(key string) (*Breaker, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	b, ok := g.m[key]
	return b, ok
}
