package catchup

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/retry"
)

// Guard is the ordering guard through which a Refetcher applies an
// object's state: idempotency/sqlstore's Store is one. Each method records,
// in tx, the position of entity if it is newer than the last recorded, and
// reports whether it was (apply the effect only then).
type Guard interface {
	ApplyVersion(ctx context.Context, tx steadfast.Tx, entity string, version int64) (applied bool, err error)
	ApplyTimestamp(ctx context.Context, tx steadfast.Tx, entity string, at time.Time, tieBreak string) (applied bool, err error)
}

// Outbox enqueues messages in the caller's transaction: outbox/sqloutbox's
// Store is one.
type Outbox interface {
	Enqueue(ctx context.Context, tx steadfast.Tx, msgs ...outbox.Message) error
}

// Object is the current state of an entity, as the provider returns it when
// asked for the object itself.
type Object struct {
	// Version is the provider's version of the object, or 0 when it has
	// none (Updated is then used).
	Version int64
	// Updated is when the provider last changed the object; used when
	// Version is 0.
	Updated time.Time
	// Payload is the object as the provider returned it.
	Payload []byte
}

// Refetcher fetches the current state of entities in doubt and applies it
// through the ordering guard, at the object's own provider version (or
// update time), never at a local time: a later real event still applies
// after it, and an older one is dropped as stale.
//
// A refetch is enqueued through the outbox in the transaction that found the
// doubt, so it survives crashes: ApplyVersion enqueues one when it sees a
// version skipped, and Enqueue when the application decides an entity is in
// doubt. A Refetcher is also the outbox.Publisher that performs them: run an
// outbox.Relay that delivers the refetch topic (WithRefetchTopic) to it. A
// refetch that fails is retried by the relay, with its backoff, and
// dead-lettered by it after its maximum of attempts.
//
// A Refetcher is safe for concurrent use.
type Refetcher struct {
	db    *sql.DB
	guard Guard
	ob    Outbox
	fetch func(ctx context.Context, entity string) (Object, error)
	apply func(ctx context.Context, tx steadfast.Tx, entity string, obj Object) error
	cfg   config
}

var _ outbox.Publisher = (*Refetcher)(nil)

// NewRefetcher returns a Refetcher that enqueues refetches in ob, fetches
// objects with fetch (its error may speak the retry protocol: a Permanent
// error dead-letters the refetch at once) and applies them with apply in a
// transaction of db, through guard. apply runs again when the database
// aborts the transaction (a deadlock, SQLite busy): keep its effects in tx.
// It returns an error for a nil argument and one naming the option at
// fault.
func NewRefetcher(db *sql.DB, guard Guard, ob Outbox,
	fetch func(ctx context.Context, entity string) (Object, error),
	apply func(ctx context.Context, tx steadfast.Tx, entity string, obj Object) error,
	opts ...Option) (*Refetcher, error) {
	switch {
	case db == nil:
		return nil, errors.New("catchup: NewRefetcher: nil *sql.DB")
	case isNil(guard):
		return nil, errors.New("catchup: NewRefetcher: nil Guard")
	case isNil(ob):
		return nil, errors.New("catchup: NewRefetcher: nil Outbox")
	case fetch == nil:
		return nil, errors.New("catchup: NewRefetcher: nil fetch function")
	case apply == nil:
		return nil, errors.New("catchup: NewRefetcher: nil apply function")
	}
	cfg := defaults()
	if err := applyOptions(ctorRefetcher, &cfg, opts); err != nil {
		return nil, err
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	return &Refetcher{db: db, guard: guard, ob: ob, fetch: fetch, apply: apply, cfg: cfg}, nil
}

// ApplyVersion is the ordering guard for an entity whose versions are
// consecutive (1 for its first event, then 2, 3, ...), that also reports a
// gap: in tx it records version as the entity's last applied one if it is
// newer, and reports applied (apply the event's effect only then). When
// versions were skipped (the event before this one was never applied,
// including when this is the first event seen of an entity at a version
// above 1) it reports gap, and has enqueued, in tx, a refetch of entity.
// It costs the guard two statements.
func (r *Refetcher) ApplyVersion(ctx context.Context, tx steadfast.Tx, entity string, version int64) (applied, gap bool, err error) {
	if r == nil {
		return false, false, errors.New("catchup: ApplyVersion: nil *Refetcher")
	}
	if tx == nil {
		return false, false, errors.New("catchup: ApplyVersion: nil transaction")
	}
	if version > 1 && version != math.MinInt64 {
		// Recording version-1 succeeds only when the guard was behind it:
		// then a version was skipped. The position it leaves is replaced
		// by version's just below, in the same transaction.
		if gap, err = r.guard.ApplyVersion(ctx, tx, entity, version-1); err != nil {
			return false, false, err
		}
	}
	if applied, err = r.guard.ApplyVersion(ctx, tx, entity, version); err != nil {
		return false, false, err
	}
	if gap {
		if err := r.Enqueue(ctx, tx, entity); err != nil {
			return false, false, err
		}
	}
	return applied, gap, nil
}

type refetchPayload struct {
	Entity string `json:"entity"`
}

// Enqueue enqueues, in tx, a refetch of each entity: once tx commits, the
// relay delivers it to the Refetcher, which fetches the entity's current
// state and applies it through the guard.
func (r *Refetcher) Enqueue(ctx context.Context, tx steadfast.Tx, entities ...string) error {
	if r == nil {
		return errors.New("catchup: Enqueue: nil *Refetcher")
	}
	if tx == nil {
		return errors.New("catchup: Enqueue: nil transaction")
	}
	msgs := make([]outbox.Message, 0, len(entities))
	for _, e := range entities {
		if e == "" {
			return errors.New("catchup: Enqueue: empty entity")
		}
		b, _ := json.Marshal(refetchPayload{Entity: e})
		msgs = append(msgs, outbox.Message{Topic: r.cfg.topic, Key: e, Payload: b})
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := r.ob.Enqueue(ctx, tx, msgs...); err != nil {
		return fmt.Errorf("catchup: enqueuing a refetch: %w", err)
	}
	return nil
}

// Publish performs a refetch that the relay delivers: it fetches the
// entity's object and, in one transaction, applies it through the guard at
// the object's version (or update time) and, when newer than what was
// applied, with the apply function. It implements outbox.Publisher; a
// delivery of another topic is refused as permanent.
func (r *Refetcher) Publish(ctx context.Context, d outbox.Delivery) error {
	if r == nil {
		return retry.Permanent(errors.New("catchup: Publish: nil *Refetcher"))
	}
	if d.Topic != r.cfg.topic {
		return retry.Permanent(fmt.Errorf("catchup: Publish: topic %q is not the refetch topic %q", d.Topic, r.cfg.topic))
	}
	var p refetchPayload
	if err := json.Unmarshal(d.Payload, &p); err != nil || p.Entity == "" {
		return retry.Permanent(fmt.Errorf("catchup: Publish: message %s is not a refetch", d.ID))
	}
	obj, err := r.fetch(ctx, p.Entity)
	if err != nil {
		return fmt.Errorf("catchup: refetching %s: %w", p.Entity, err)
	}
	if obj.Version == 0 && obj.Updated.IsZero() {
		return retry.Permanent(fmt.Errorf("catchup: refetching %s: the object has neither a version nor an update time", p.Entity))
	}
	applied := false
	err = sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		tx, err := r.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if applied, err = r.guardApply(ctx, tx, p.Entity, obj); err == nil && applied {
			err = r.apply(ctx, tx, p.Entity, obj)
		}
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return fmt.Errorf("catchup: applying the refetched %s: %w", p.Entity, err)
	}
	r.cfg.logger.Debug("catchup: refetched", "entity", p.Entity, "version", obj.Version, "applied", applied)
	return nil
}

func (r *Refetcher) guardApply(ctx context.Context, tx steadfast.Tx, entity string, obj Object) (bool, error) {
	if obj.Version != 0 {
		return r.guard.ApplyVersion(ctx, tx, entity, obj.Version)
	}
	return r.guard.ApplyTimestamp(ctx, tx, entity, obj.Updated, "")
}
