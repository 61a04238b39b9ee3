package ratelimit

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
)

// Store makes the decisions of a Limiter for every replica of a service
// (WithStore); package ratelimit/redislimit implements it on Redis. Each
// method is one atomic step that reads time from the store's own clock, never
// from a replica's. A method must honour ctx and return within a short bound
// of its own (redislimit: 50ms), since a Limiter falls back to its local
// share only when the Store fails. A Store is safe for concurrent use.
type Store interface {
	// Reserve decides for one request of key that goes no sooner than
	// after from now, under limits (sorted by period, the shortest first)
	// and under the limit announced for key (Learn) while it holds. When
	// every window has budget then, it takes it and returns after.
	// Otherwise it returns the delay from now until every window will
	// have, and takes the budget at that time (the caller waits the
	// delay, then sends) only when the delay is at most maxWait: a delay
	// over maxWait means nothing was taken.
	Reserve(ctx context.Context, key string, limits []Limit, after, maxWait time.Duration) (time.Duration, error)
	// Pause holds key: nothing is let through before d from now, and
	// afterwards the shortest window and the announced limit start with no
	// budget saved up, so the requests that waited go one interval apart,
	// not all at once. Pause(ctx, key, 0) only empties them now.
	Pause(ctx context.Context, key string, d time.Duration) error
	// Learn records the limit a provider announced for key, for validFor
	// from now. inFlight is how long the request whose response announced
	// it was in flight: an announcement that arrives while that request
	// was in flight together with the one in force (it was stored less
	// than inFlight ago) only lowers the rate, so that concurrent
	// responses are reconciled by the lowest remaining budget. A later
	// one replaces it: a lower rate keeps what the announced limit saved
	// up or owes, a higher one starts afresh with no budget saved up, as
	// a first one does. validFor 0 ends the limit in force. The limit
	// only ever narrows what limits allow (Reserve).
	Learn(ctx context.Context, key string, announced Limit, validFor, inFlight time.Duration) error
}

// Settings of the breaker around a Store.
const (
	storeFailures = 3
	storeOpen     = time.Second
	// settle is how long after the store came back a replica still keeps
	// to its local share as well: long enough for every replica's breaker
	// to have let a probe through (storeOpen) and seen the store answer.
	settle = 2 * storeOpen
)

// shared is a Limiter's side of a Store: the breaker around it and the
// switches between the shared quota and the local share.
type shared struct {
	store    Store
	replicas int
	brk      *breaker.Breaker
	log      *slog.Logger

	// settleUntil (Unix nanoseconds): until then a decision takes from
	// the local share and, when the store answers, from the shared quota
	// too: while the store is away (the breaker is not closed), and for a
	// while after it came back, since other replicas may still be on
	// their share. The local share is kept until then, with the debts of
	// the requests that wait on it.
	settleUntil atomic.Int64
	lastErr     atomic.Pointer[errBox]
}

type errBox struct{ err error }

func newShared(s Store, replicas int, log *slog.Logger, cfg *config) (*shared, error) {
	sh := &shared{store: s, replicas: replicas, log: log}
	opts := []breaker.Option{
		breaker.WithConsecutiveFailures(storeFailures),
		breaker.WithOpenDuration(storeOpen),
		breaker.WithLogger(slog.New(slog.DiscardHandler)), // the limiter logs the switches
		breaker.WithStateHook(sh.transition),
		// A decision cut off by its caller's deadline says nothing of
		// the store; the store's own timeout does.
		breaker.WithClassifier(func(ctx context.Context, err error) breaker.Outcome {
			if ctx.Err() != nil {
				return breaker.Ignore
			}
			return breaker.Failure
		}),
	}
	if cfg.meter != nil {
		opts = append(opts, breaker.WithMeterProvider(cfg.meter))
	}
	b, err := breaker.New("ratelimit store", opts...)
	if err != nil {
		return nil, err
	}
	sh.brk = b
	return sh, nil
}

// transition logs the switches: one line when the limiter falls back to
// its local share, one when it shares again.
func (s *shared) transition(t breaker.Transition) {
	switch {
	case t.To == breaker.Open:
		// Away, and for a while after: see settleUntil.
		s.settleUntil.Store(math.MaxInt64)
		if t.From != breaker.Closed {
			return // a probe failed: still away
		}
		var err error
		if b := s.lastErr.Load(); b != nil {
			err = b.err
		}
		s.log.Warn("ratelimit: shared store unavailable: each key falls back to its local share of the quota",
			"replicas", s.replicas, "err", err)
	case t.To == breaker.Closed:
		s.settleUntil.Store(time.Now().Add(settle).UnixNano())
		s.log.Info("ratelimit: shared store answers again: the quota is shared again")
	}
}

func (s *shared) call(ctx context.Context, f func(context.Context) error) error {
	_, err := breaker.Execute(ctx, s.brk, func(ctx context.Context) (struct{}, error) {
		err := f(ctx)
		if err != nil && ctx.Err() == nil {
			s.lastErr.Store(&errBox{err})
		}
		return struct{}{}, err
	})
	return err
}

func (s *shared) reserve(ctx context.Context, key string, limits []Limit, after, maxWait time.Duration) (time.Duration, error) {
	return breaker.Execute(ctx, s.brk, func(ctx context.Context) (time.Duration, error) {
		d, err := s.store.Reserve(ctx, key, limits, after, maxWait)
		if err != nil && ctx.Err() == nil {
			s.lastErr.Store(&errBox{err})
		}
		return d, err
	})
}
