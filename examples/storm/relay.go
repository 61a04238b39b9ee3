package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
)

// relays runs the outbox relay to the partner, crashes it once the partner
// has taken a share of the messages, and starts a new one in its place.
type relays struct {
	s    *storm
	pub  outbox.Publisher
	opts []outbox.Option

	mu      sync.Mutex
	current *outbox.Relay
	crashed bool
	done    chan struct{}
	wg      sync.WaitGroup
	stopped bool
}

var errCrashed = errors.New("storm: relay process crashed")

// crashingStore and crashingPublisher are the first relay's view of the
// world: once dead, nothing it does reaches the database or the partner,
// as when its process is killed. The store embeds outbox.Store, so that
// the rest of the contract passes through.
type crashingStore struct {
	outbox.Store
	dead *atomic.Bool
}

func (c crashingStore) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	if c.dead.Load() {
		return errCrashed
	}
	return c.Store.Claim(ctx, req, claimed)
}

// Settle of a dead relay writes nothing: every outcome is refused, as the
// store refuses those of a claim that was taken over.
func (c crashingStore) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	if c.dead.Load() {
		refused := make([]int64, len(outcomes))
		for i, o := range outcomes {
			refused[i] = o.Position
		}
		return refused, nil
	}
	return c.Store.Settle(ctx, outcomes)
}

type crashingPublisher struct {
	outbox.Publisher
	dead *atomic.Bool
}

func (c crashingPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	if c.dead.Load() {
		return errCrashed
	}
	return c.Publisher.Publish(ctx, d)
}

func startRelays(ctx context.Context, s *storm) (*relays, error) {
	r := &relays{s: s, done: make(chan struct{})}
	if s.cfg.noOutbox {
		r.wg.Add(1)
		go r.crashWhenDue(ctx, nil)
		return r, nil
	}
	pub, err := webhookpub.New(
		map[string]webhookpub.Endpoint{partnerTopic: {URL: s.partner.url(), Secrets: []string{partnerSecret}}},
		webhookpub.WithAttemptTimeout(250*time.Millisecond),
		// The partner listens on loopback, which the publisher refuses by
		// default (tenants choose webhook URLs): allow it by name.
		webhookpub.WithAllowedNetworks("127.0.0.0/8", "::1"),
		webhookpub.WithLogger(s.log),
		webhookpub.WithBreaker(append([]breaker.Option{
			breaker.WithConsecutiveFailures(5),
			breaker.WithOpenDuration(500 * time.Millisecond),
			breaker.WithLogger(s.log),
		}, s.breakerHooks()...)...),
	)
	if err != nil {
		return nil, err
	}
	r.pub = pub
	if s.page != nil {
		r.pub = s.page.Observe(pub) // the page's chart of this process's deliveries
	}
	r.opts = []outbox.Option{
		outbox.WithLease(2 * time.Second),
		outbox.WithPublishTimeout(500 * time.Millisecond),
		outbox.WithPollInterval(50 * time.Millisecond),
		outbox.WithBackoff(10*time.Millisecond, 300*time.Millisecond),
		outbox.WithMaxRetryAfter(2 * time.Second),
		outbox.WithConcurrency(16),
		outbox.WithMaxAttempts(100),
		outbox.WithLogger(s.log),
	}
	if s.postgres {
		l, err := pgxoutbox.NewListener(s.out, s.db)
		if err != nil {
			return nil, err
		}
		r.opts = append(r.opts, outbox.WithNotifier(l))
	}
	dead := &atomic.Bool{}
	first, err := outbox.NewRelay(crashingStore{Store: s.out, dead: dead}, crashingPublisher{Publisher: r.pub, dead: dead}, r.opts...)
	if err != nil {
		return nil, err
	}
	if err := first.Start(ctx); err != nil {
		return nil, err
	}
	r.current = first
	r.wg.Add(1)
	go r.crashWhenDue(ctx, dead)
	return r, nil
}

// crashWhenDue waits until the partner has taken a fifth of the expected
// messages, then kills the relay and starts a new one.
func (r *relays) crashWhenDue(ctx context.Context, dead *atomic.Bool) {
	defer r.wg.Done()
	due := int64(len(r.s.plan.orders))
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for r.s.c.partnerReceived.Load() < due {
		select {
		case <-t.C:
		case <-r.done:
			return
		case <-ctx.Done():
			return
		}
	}
	r.crash(ctx, dead)
}

func (r *relays) crash(ctx context.Context, dead *atomic.Bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.crashed || r.stopped {
		return
	}
	r.crashed = true
	r.s.partner.markCrash()
	if dead == nil { // -no-outbox: the crash drops the calls in flight
		return
	}
	dead.Store(true)
	// A new relay takes over at once; nothing the old one still tries to
	// write (outcomes, releases) reaches the database, so its messages come
	// back when their leases expire. The old one is stopped in the
	// background: its Stop gives the final write-back a grace period, which
	// here can only fail.
	old := r.current
	next, err := outbox.NewRelay(r.s.out, r.pub, r.opts...)
	if err == nil {
		err = next.Start(ctx)
	}
	if err != nil {
		r.s.log.Error("restart relay", "err", err)
		return
	}
	r.current = next
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		stopCtx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_ = old.Stop(stopCtx)
	}()
}

// waitDrained waits until every committed message was delivered (or the
// storm's deadline passed).
func (r *relays) waitDrained(ctx context.Context, s *storm) {
	for ctx.Err() == nil {
		if s.cfg.noOutbox {
			s.partner.directCalls.Wait()
			return
		}
		st, err := s.out.Stats(ctx)
		if err == nil && st.Pending == 0 {
			r.mu.Lock()
			crashed := r.crashed
			r.mu.Unlock()
			if crashed {
				return
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
		if err == nil && st.Pending == 0 {
			// Everything went through before the crash was due: crash now,
			// so that the report always covers a relay restart.
			r.mu.Lock()
			crashed := r.crashed
			r.mu.Unlock()
			if !crashed {
				r.crash(ctx, &atomic.Bool{})
			}
		}
	}
}

func (r *relays) stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	close(r.done)
	cur := r.current
	r.mu.Unlock()
	r.wg.Wait()
	if cur != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cur.Stop(ctx)
		cancel()
	}
}
