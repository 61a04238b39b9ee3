package webhookpub

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// cache holds the endpoints WithResolver found, at most size of them, each
// until it expires. Concurrent misses for one destination call the resolver
// once. It is safe for concurrent use; the resolver is never called with the
// lock held.
type cache struct {
	resolve func(ctx context.Context, destination string) (Endpoint, error)
	size    int
	ttl     time.Duration

	mu      sync.Mutex
	entries map[string]*list.Element // of *cached
	lru     list.List                // front: most recently used
	flight  singleflight.Group
}

type cached struct {
	destination string
	ep          *endpoint
	expires     time.Time
}

func newCache(resolve func(context.Context, string) (Endpoint, error), size int, ttl time.Duration) *cache {
	return &cache{resolve: resolve, size: size, ttl: ttl, entries: make(map[string]*list.Element)}
}

// get returns the endpoint of destination, from the cache or else from the
// resolver, made into an endpoint by build. now is the publisher's clock.
func (c *cache) get(ctx context.Context, destination string, now func() time.Time,
	build func(destination string, ep Endpoint) (*endpoint, error)) (*endpoint, error) {
	c.mu.Lock()
	if e, ok := c.entries[destination]; ok {
		v := e.Value.(*cached)
		if now().Before(v.expires) {
			c.lru.MoveToFront(e)
			c.mu.Unlock()
			return v.ep, nil
		}
		c.lru.Remove(e)
		delete(c.entries, destination)
	}
	c.mu.Unlock()

	v, err, _ := c.flight.Do(destination, func() (any, error) {
		raw, err := c.resolve(ctx, destination)
		if err != nil {
			if errors.Is(err, ErrUnknownEndpoint) {
				return nil, permanent(fmt.Errorf("webhookpub: destination %q: %w", destination, err))
			}
			return nil, fmt.Errorf("webhookpub: destination %q: resolving its endpoint: %w", destination, err)
		}
		ep, err := build(destination, raw)
		if err != nil {
			return nil, permanent(fmt.Errorf("webhookpub: destination %q: the resolver's endpoint: %w", destination, err))
		}
		c.put(&cached{destination: destination, ep: ep, expires: now().Add(c.ttl)})
		return ep, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*endpoint), nil
}

func (c *cache) put(v *cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[v.destination]; ok {
		c.lru.Remove(e)
	}
	c.entries[v.destination] = c.lru.PushFront(v)
	for c.lru.Len() > c.size {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cached).destination)
	}
}
