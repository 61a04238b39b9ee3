package housekeeping

import (
	"context"
	"time"
)

// The stores a Sweeper drives. Each is one method of a steadfast store, so
// that the purge statements stay with the store that owns the table; a store
// of your own implements the one it has. Every method removes at most batch
// (or limit) rows per statement, decides what is past its time on the
// database's clock, and returns how many rows it removed; a Sweeper calls it
// again while it removes a full batch.

// IdempotencyStore removes expired idempotency records: completed records
// past their retention and claims abandoned past the store's own retention
// for them, never a claim whose lease is live. *sqlstore.Store implements
// it.
type IdempotencyStore interface {
	Purge(ctx context.Context, batch int) (int64, error)
}

// InboxStore removes inbox rows processed more than retention ago.
// *sqlstore.Store implements it.
type InboxStore interface {
	PurgeInbox(ctx context.Context, retention time.Duration, batch int) (int64, error)
}

// GuardStore removes ordering-guard rows not updated for retention.
// *sqlstore.Store implements it.
type GuardStore interface {
	PurgeGuard(ctx context.Context, retention time.Duration, batch int) (int64, error)
}

// OutboxStore removes messages delivered more than retention ago, never a
// pending or dead one. *sqloutbox.Store implements it.
type OutboxStore interface {
	Cleanup(ctx context.Context, retention time.Duration, limit int) (int, error)
}

// DeadLetterStore removes dead letters that became dead more than retention
// ago. *sqloutbox.Store implements it.
type DeadLetterStore interface {
	CleanupDead(ctx context.Context, retention time.Duration, limit int) (int, error)
}

// CatchupStore removes the records of catch-up events whose handler failed
// and that were neither applied since nor made dead letters, not updated
// for retention. *sqlcatchup.Store implements it.
type CatchupStore interface {
	PurgeFailing(ctx context.Context, retention time.Duration, batch int) (int64, error)
}
