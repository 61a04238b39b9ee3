package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// ForceRelease deletes the in-progress claim of key whatever its token, for
// operators releasing a claim stuck behind a long lease: the next claimer
// runs the work again, and the old holder's Complete fails with
// idempotency.ErrLeaseLost. A completed record is left alone. It returns
// idempotency.ErrNotFound when key has no claim in progress.
func (s *Store) ForceRelease(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.retry(ctx, func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, s.q.force, key)
		if err != nil {
			return fmt.Errorf("sqlstore: force release: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlstore: force release: %w", err)
		}
		if n == 0 {
			return idempotency.ErrNotFound
		}
		return nil
	})
}

// Purge deletes expired records: completed records past their retention and
// claims abandoned for longer than WithAbandonedRetention, by the database's
// clock. It deletes at most
// batch rows per statement, each statement its own transaction, so that it
// holds few locks for a short time while claims go on; it repeats until a
// statement deletes fewer than batch rows, and returns how many it deleted in
// all. On PostgreSQL, rows locked by a transaction in progress are skipped
// (SKIP LOCKED), so any number of replicas may purge at once. A batch <= 0
// means 1000. Run it periodically (say, hourly) from one or more replicas.
func (s *Store) Purge(ctx context.Context, batch int) (int64, error) {
	return s.purge(ctx, s.q.purge, batch)
}

// PurgeInbox deletes inbox entries processed longer than olderThan ago (by
// the database's clock), in batches as Purge does, and returns how many it
// deleted. Keep entries for longer than any broker may redeliver a message
// (its retention or dedup window). It returns an error wrapping
// idempotency.ErrInvalid for an olderThan that is not positive.
func (s *Store) PurgeInbox(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("sqlstore: PurgeInbox: %w: olderThan %v is not positive", idempotency.ErrInvalid, olderThan)
	}
	return s.purge(ctx, s.q.inboxGC, batch, micros(olderThan))
}

// PurgeGuard deletes ordering-guard rows (ApplyVersion, ApplyTimestamp) of
// entities that no event has advanced for longer than olderThan (by the
// database's clock), in batches as Purge does, and returns how many it
// deleted. Beware: a purged entity's next event is applied as new, so a late
// stale event for it would overwrite newer state; keep the rows for longer
// than any event of an entity can arrive late. housekeeping runs it only when
// asked (WithOrderingGuard). It returns an error wrapping idempotency.ErrInvalid
// for an olderThan that is not positive.
func (s *Store) PurgeGuard(ctx context.Context, olderThan time.Duration, batch int) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("sqlstore: PurgeGuard: %w: olderThan %v is not positive", idempotency.ErrInvalid, olderThan)
	}
	return s.purge(ctx, s.q.guardGC, batch, micros(olderThan))
}

func (s *Store) purge(ctx context.Context, query string, batch int, args ...any) (int64, error) {
	if batch <= 0 {
		batch = 1000
	}
	args = append(args, batch)
	var total int64
	for {
		var n int64
		err := s.retry(ctx, func(ctx context.Context) error {
			res, err := s.db.ExecContext(ctx, query, args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("sqlstore: purge: %w", err)
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
	}
}
