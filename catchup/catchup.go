package catchup

import (
	"context"
	"errors"
	"time"

	"github.com/steadfast-go/steadfast"
)

// Event is one event of a provider: an item of its events list, or the body
// of a webhook delivery.
type Event struct {
	// ID is the provider's event id, the one its list shows (Stripe's
	// "evt_..."). Both paths mark it in the inbox.
	ID string
	// Type is the provider's event type ("charge.succeeded"), or empty.
	Type string
	// Created is when the provider created the event, or zero when unknown.
	// The overlap window by time (WithOverlap) reads it.
	Created time.Time
	// Payload is the event as the provider sent it (JSON).
	Payload []byte
	// Cursor is the cursor from which a listing resumes after this event:
	// Source.List(ctx, ev.Cursor) lists the events that follow it (and may
	// list it and some before it again, which the inbox absorbs). Empty for
	// an event that came by webhook.
	Cursor string
}

// Page is a page of events that a Source returns.
type Page struct {
	// Events are the events after the cursor asked for, oldest first.
	Events []Event
	// Next is the cursor of the following page, when More is true.
	Next string
	// More reports whether the list goes on after this page.
	More bool
}

// Source is a provider's list of events. HTTPSource reads the common shapes
// of JSON lists; implement Source for anything else.
type Source interface {
	// List returns a page of the events after cursor, oldest first; the
	// empty cursor lists from the oldest event the provider still keeps. An
	// error that speaks the protocol of package retry (a RetryAfter method,
	// a Permanent method) tells the poller when to try again.
	List(ctx context.Context, cursor string) (Page, error)
}

// HandlerFunc applies an event. It runs in tx, the transaction in which the
// event's id is marked in the inbox (and, when polled, the cursor advances):
// it must make its effects in tx and must not commit or roll it back. An
// error rolls everything back; the event stays unapplied.
type HandlerFunc func(ctx context.Context, tx steadfast.Tx, ev Event) error

// Inbox records, in the caller's transaction, which events a consumer has
// processed. idempotency/sqlstore's Store is one.
type Inbox interface {
	// MarkProcessed records in tx that consumer processed the message
	// messageID, and reports whether this is the first time.
	MarkProcessed(ctx context.Context, tx steadfast.Tx, consumer, messageID string) (first bool, err error)
}

// Store keeps a poller's durable state: the cursor and lease of each source,
// and the events whose handler failed. catchup/sqlcatchup implements it on
// PostgreSQL, SQLite and MySQL/MariaDB. Time in a Store is the store's clock
// (the database's), so that replicas whose clocks disagree still agree on
// who holds a lease. Every method is safe for concurrent use by any number
// of processes.
type Store interface {
	// Lease takes or renews the lease of source for owner, for d from now,
	// and returns source's cursor ("" before its first page). held is false
	// while another owner's lease is live.
	Lease(ctx context.Context, source, owner string, d time.Duration) (cursor string, held bool, err error)
	// Release ends owner's lease of source, if owner holds it.
	Release(ctx context.Context, source, owner string) error
	// Begin begins a transaction in the store's database.
	Begin(ctx context.Context) (steadfast.Tx, error)
	// Advance, in tx, stores cursor as source's cursor and renews owner's
	// lease for d. It returns an error matching ErrLeaseLost, and changes
	// nothing, when owner's lease has expired or another owner holds it.
	Advance(ctx context.Context, tx steadfast.Tx, source, owner, cursor string, d time.Duration) error
	// Fail records, in a transaction of its own, a failed attempt at ev
	// with its reason, and returns the number of failed attempts recorded.
	Fail(ctx context.Context, source string, ev Event, reason string) (attempts int, err error)
	// Bury, in tx, makes ev a dead letter of source with its reason.
	Bury(ctx context.Context, tx steadfast.Tx, source string, ev Event, reason string) error
	// Requeued returns up to limit dead letters of source that an operator
	// requeued, oldest first.
	Requeued(ctx context.Context, source string, limit int) ([]Event, error)
	// Resolve, in tx, deletes the requeued dead letter eventID of source and
	// reports whether it was there (false: another poller resolved it, or
	// an operator discarded it).
	Resolve(ctx context.Context, tx steadfast.Tx, source, eventID string) (bool, error)
}

// DeadLetter is an event whose handler kept failing: the poller gave up on
// it after the maximum of attempts (WithMaxAttempts) and moved its cursor
// past it. Its id is marked in the inbox, so a webhook delivery of it is
// skipped as well; an operator requeues (the poller applies it again) or
// discards it.
type DeadLetter struct {
	Event
	// Source is the poller's source name.
	Source string
	// Position orders dead letters; list after it.
	Position int64
	// Attempts is the number of failed attempts.
	Attempts int
	// LastError is the handler's last error.
	LastError string
	// Requeued reports whether an operator requeued it (the poller applies
	// it at its next pass).
	Requeued bool
	// UpdatedAt is when it was last buried or requeued.
	UpdatedAt time.Time
}

// ErrLeaseLost is matched by the error of Store.Advance when the poller's
// lease of its source expired and another replica may have taken it.
var ErrLeaseLost = errors.New("catchup: lease lost")
