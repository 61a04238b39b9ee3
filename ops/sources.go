package ops

import (
	"context"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/outbox"
)

// The stores the page reads, each a small interface of what the page calls,
// implemented by the steadfast store named in its comment.

// OutboxStore is what the page reads and does in an outbox store.
// *sqloutbox.Store implements it.
//
// A store that also has the methods
//
//	StatsByDestination(ctx context.Context) ([]outbox.Stats, error)
//	ListDeadByDestination(ctx context.Context, destination, topic string, after int64, limit int) ([]outbox.Record, error)
//
// (as *sqloutbox.Store does) gets its backlog shown per topic and
// destination with the messages in flight, and its dead letters filtered
// by destination in the store. Without them the page shows the store's
// totals, and filters dead letters by destination itself, reading on
// through at most 50 of the store's pages.
type OutboxStore interface {
	// Stats reports the backlog.
	Stats(ctx context.Context) (outbox.Stats, error)
	// ListDead lists up to limit dead letters of topic ("" for all) with
	// a position above after, in position order.
	ListDead(ctx context.Context, topic string, after int64, limit int) ([]outbox.Record, error)
	// Get returns one message in whatever state, or an error matching
	// outbox.ErrNotFound.
	Get(ctx context.Context, id string) (outbox.Record, error)
	// Requeue makes the named dead letters pending again.
	Requeue(ctx context.Context, ids ...string) (int, error)
	// Discard deletes the named dead letters.
	Discard(ctx context.Context, ids ...string) (int, error)
	// Pauses lists the destinations paused now.
	Pauses(ctx context.Context) ([]outbox.PausedDestination, error)
	// Resume lifts the pauses of the named destinations.
	Resume(ctx context.Context, destinations ...string) (int, error)
}

// IdempotencyStore is what the page reads and does in an idempotency
// store: look a record up and release a stuck claim. *sqlstore.Store and
// *redisstore.Store implement it.
type IdempotencyStore interface {
	// Get returns the record of key, or an error matching
	// idempotency.ErrNotFound.
	Get(ctx context.Context, key string) (idempotency.Record, error)
	// ForceRelease deletes key's claim in progress whatever its token, or
	// returns an error matching idempotency.ErrNotFound.
	ForceRelease(ctx context.Context, key string) error
}

// destRow is one line of the backlog table.
type destRow struct {
	Topic, Destination      string
	Pending, InFlight, Dead int64
	HasInFlight             bool
	OldestPending           time.Duration
	Paused                  bool
}

// pauseRow is one paused destination.
type pauseRow struct {
	Destination, Reason string
	Until               time.Time
	Remaining           time.Duration
}

// outboxView is the page's side of an outbox store: what it shows and does,
// whatever the store's own shape.
type outboxView interface {
	backlog(ctx context.Context) ([]destRow, error)
	// pauses returns ok false when the store keeps no pauses.
	pauses(ctx context.Context) (rows []pauseRow, ok bool, err error)
	resume(ctx context.Context, destination string) (int, error)
	dead(ctx context.Context, topic, destination string, after int64, limit int) ([]outbox.Record, error)
	get(ctx context.Context, id string) (outbox.Record, error)
	requeue(ctx context.Context, ids []string) (int, error)
	discard(ctx context.Context, ids []string) (int, error)
}

// statsByDestination and deadByDestination are the optional methods of an
// OutboxStore (see its doc).
type statsByDestination interface {
	StatsByDestination(ctx context.Context) ([]outbox.Stats, error)
}

type deadByDestination interface {
	ListDeadByDestination(ctx context.Context, destination, topic string, after int64, limit int) ([]outbox.Record, error)
}

// storeView adapts an OutboxStore.
type storeView struct{ s OutboxStore }

func (v storeView) backlog(ctx context.Context) ([]destRow, error) {
	if sb, ok := v.s.(statsByDestination); ok {
		stats, err := sb.StatsByDestination(ctx)
		if err != nil {
			return nil, err
		}
		rows := make([]destRow, 0, len(stats))
		for _, st := range stats {
			rows = append(rows, destRow{Topic: st.Topic, Destination: st.Destination, Pending: st.Pending, InFlight: st.InFlight,
				HasInFlight: true, Dead: st.Dead, OldestPending: st.OldestPendingAge})
		}
		return rows, nil
	}
	st, err := v.s.Stats(ctx)
	if err != nil {
		return nil, err
	}
	if st.Pending == 0 && st.Dead == 0 {
		return nil, nil
	}
	return []destRow{{Pending: st.Pending, Dead: st.Dead, OldestPending: st.OldestPendingAge}}, nil
}

func (v storeView) pauses(ctx context.Context) ([]pauseRow, bool, error) {
	ps, err := v.s.Pauses(ctx)
	if err != nil {
		return nil, true, err
	}
	rows := make([]pauseRow, len(ps))
	now := time.Now()
	for i, p := range ps {
		rows[i] = pauseRow{Destination: p.Destination, Reason: p.Reason, Until: p.Until, Remaining: max(p.Until.Sub(now), 0)}
	}
	return rows, true, nil
}

func (v storeView) resume(ctx context.Context, destination string) (int, error) {
	return v.s.Resume(ctx, destination)
}

func (v storeView) dead(ctx context.Context, topic, destination string, after int64, limit int) ([]outbox.Record, error) {
	if destination == "" {
		return v.s.ListDead(ctx, topic, after, limit)
	}
	if db, ok := v.s.(deadByDestination); ok {
		return db.ListDeadByDestination(ctx, destination, topic, after, limit)
	}
	// The store filters by topic only: read on, a bounded number of its
	// pages, until limit dead letters of the destination are found.
	var kept []outbox.Record
	for range maxFilterPages {
		recs, err := v.s.ListDead(ctx, topic, after, limit)
		if err != nil {
			return kept, err
		}
		for _, r := range recs {
			if destinationOf(r.Message) == destination {
				kept = append(kept, r)
				if len(kept) == limit {
					return kept, nil
				}
			}
		}
		if len(recs) < limit {
			break
		}
		after = recs[len(recs)-1].Position
	}
	return kept, nil
}

// maxFilterPages bounds the store pages read to filter dead letters by
// destination.
const maxFilterPages = 50

func (v storeView) get(ctx context.Context, id string) (outbox.Record, error) {
	return v.s.Get(ctx, id)
}

func (v storeView) requeue(ctx context.Context, ids []string) (int, error) {
	return v.s.Requeue(ctx, ids...)
}

func (v storeView) discard(ctx context.Context, ids []string) (int, error) {
	return v.s.Discard(ctx, ids...)
}

func destinationOf(m outbox.Message) string {
	if m.Destination != "" {
		return m.Destination
	}
	return m.Topic
}
