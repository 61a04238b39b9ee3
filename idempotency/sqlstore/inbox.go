package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
)

// MarkProcessed records, inside tx, that consumer processed the message
// messageID, and reports whether this is the first time (first is false for
// a duplicate delivery: skip its effect). Run it in the same transaction as
// the message's effect, so that both commit or roll back together. A
// concurrent transaction marking the same message waits on the row until
// this one ends, then sees it processed (or, after a rollback, marks it
// itself). A deadlock or busy error aborts tx and is returned as is; Process
// retries those for you.
func (s *Store) MarkProcessed(ctx context.Context, tx steadfast.Tx, consumer, messageID string) (first bool, err error) {
	if tx == nil {
		return false, errors.New("sqlstore: MarkProcessed: nil transaction")
	}
	if err := checkInbox(consumer, messageID); err != nil {
		return false, err
	}
	res, err := s.exec(ctx, tx, s.q.inbox, consumer, messageID)
	if err != nil {
		return false, fmt.Errorf("sqlstore: mark processed: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlstore: mark processed: %w", err)
	}
	return n == 1, nil
}

func checkInbox(consumer, messageID string) error {
	if consumer == "" || messageID == "" {
		return fmt.Errorf("sqlstore: %w: empty consumer or message id", idempotency.ErrInvalid)
	}
	if len(consumer) > maxShortLen {
		return fmt.Errorf("sqlstore: %w: consumer is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(consumer), maxShortLen)
	}
	if len(messageID) > maxKeyLen {
		return fmt.Errorf("sqlstore: %w: message id is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(messageID), maxKeyLen)
	}
	return nil
}

// Process runs fn for the message messageID of consumer at most once: it
// begins a transaction, marks the message processed in it, runs fn with the
// transaction and commits. For a message already processed it runs nothing
// and returns duplicate true. If fn returns an error, the transaction is
// rolled back (the message stays unprocessed, so a redelivery runs fn again)
// and Process returns that error.
//
// If the database aborts the transaction with a deadlock or busy error,
// Process runs the whole transaction again, fn included: fn may therefore be
// called more than once, but the effects of only one call ever commit, so fn
// must keep its effects inside tx.
func (s *Store) Process(ctx context.Context, consumer, messageID string, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error) {
	if err := checkInbox(consumer, messageID); err != nil {
		return false, err
	}
	if fn == nil {
		return false, errors.New("sqlstore: Process: nil fn")
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		duplicate = false
		tx, err := s.begin(ctx)
		if err != nil {
			return fmt.Errorf("sqlstore: process: %w", err)
		}
		first, err := s.MarkProcessed(ctx, tx, consumer, messageID)
		if err != nil {
			return errors.Join(err, rollback(tx))
		}
		if !first {
			duplicate = true
			return rollback(tx)
		}
		if err := fn(ctx, tx); err != nil {
			return errors.Join(err, rollback(tx))
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlstore: process: commit: %w", err)
		}
		return nil
	})
	return duplicate, err
}

// ApplyVersion is the ordering guard for events numbered per entity: inside
// tx it records version as the last applied one of entity if it is newer
// than the one recorded, and reports applied true; for an older or equal
// version (a stale or duplicate event) it changes nothing and reports
// applied false. Apply the event's effect in the same transaction only when
// applied is true. Concurrent transactions for one entity take turns on its
// row. Entities are compared byte for byte. Versions must be greater than
// math.MinInt64. Use either ApplyVersion or ApplyTimestamp for a given
// entity, not both. A deadlock or busy error aborts tx and is returned as
// is.
func (s *Store) ApplyVersion(ctx context.Context, tx steadfast.Tx, entity string, version int64) (applied bool, err error) {
	return s.applyPosition(ctx, tx, entity, version, "")
}

// ApplyTimestamp is ApplyVersion for events ordered by time: an event is
// newer when its timestamp is later, or equal with a tie-break string that is
// greater byte for byte (an event id, say a UUIDv7 or the outbox message id).
// Timestamps are compared at nanosecond precision.
func (s *Store) ApplyTimestamp(ctx context.Context, tx steadfast.Tx, entity string, at time.Time, tieBreak string) (applied bool, err error) {
	if len(tieBreak) > maxShortLen {
		return false, fmt.Errorf("sqlstore: %w: tie-break is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(tieBreak), maxShortLen)
	}
	return s.applyPosition(ctx, tx, entity, at.UnixNano(), tieBreak)
}

func (s *Store) applyPosition(ctx context.Context, tx steadfast.Tx, entity string, pos int64, tie string) (bool, error) {
	if tx == nil {
		return false, errors.New("sqlstore: apply: nil transaction")
	}
	if entity == "" {
		return false, fmt.Errorf("sqlstore: %w: empty entity", idempotency.ErrInvalid)
	}
	if len(entity) > maxKeyLen {
		return false, fmt.Errorf("sqlstore: %w: entity is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(entity), maxKeyLen)
	}
	if s.dialect == steadfast.MySQL {
		return s.applyMySQL(ctx, tx, entity, pos, tie)
	}
	res, err := tx.ExecContext(ctx, s.q.order, entity, pos, tie)
	if err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	return n > 0, nil
}

func (s *Store) applyMySQL(ctx context.Context, tx steadfast.Tx, entity string, pos int64, tie string) (bool, error) {
	if _, err := tx.ExecContext(ctx, s.q.order, entity); err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.q.orderLock, entity)
	if err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	var (
		last    int64
		lastTie []byte
	)
	found := rows.Next()
	if found {
		err = rows.Scan(&last, &lastTie)
	}
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rows.Err()
	}
	if err == nil && !found {
		err = fmt.Errorf("entity %q vanished under its lock", entity)
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	if pos < last || (pos == last && tie <= string(lastTie)) {
		return false, nil
	}
	res, err := tx.ExecContext(ctx, s.q.orderUpd, pos, tie, entity, pos, pos, tie)
	if err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlstore: apply: %w", err)
	}
	return n > 0, nil
}
