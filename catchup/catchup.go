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
//
// The poller hands a Store only what it can keep: ids of at most 1,024
// bytes and types of at most 255, printable UTF-8; payloads of at most
// 1 MiB; cursors of at most 8 KiB of UTF-8 without NUL; reasons of at most
// 4 KiB of UTF-8 without NUL.
type Store interface {
	// Lease takes or renews the lease of source for owner, for d from now,
	// and returns source's cursor ("" before its first page). held is false
	// while another owner's lease is live. A cursor of the form Now, or Now
	// followed by ":" and a cursor, asks the poller to skip to the end of
	// the list (reading from that cursor).
	Lease(ctx context.Context, source, owner string, d time.Duration) (cursor string, held bool, err error)
	// Release ends owner's lease of source, if owner holds it.
	Release(ctx context.Context, source, owner string) error
	// Begin begins a transaction in the store's database.
	Begin(ctx context.Context) (steadfast.Tx, error)
	// Advance, in tx, stores cursor as source's cursor, newest (when later
	// than the one stored; zero for none) as the creation time of the
	// newest event read, and renews owner's lease for d. It returns an
	// error matching ErrLeaseLost, and changes nothing, when owner's lease
	// has expired or another owner holds it.
	Advance(ctx context.Context, tx steadfast.Tx, source, owner, cursor string, newest time.Time, d time.Duration) error
	// Fail records, in a transaction of its own, a failed attempt at ev
	// with its reason, and returns the number of failed attempts recorded.
	Fail(ctx context.Context, source string, ev Event, reason string) (attempts int, err error)
	// Failing returns the ids of up to limit events of source with failed
	// attempts recorded (not dead letters).
	Failing(ctx context.Context, source string, limit int) ([]string, error)
	// Bury, in tx, makes ev a dead letter of source with its reason and
	// reports whether it was not one already. With refused, the event was
	// refused for good (see DeadLetter.Refused): such a dead letter is never
	// requeued, and burying it again changes nothing.
	Bury(ctx context.Context, tx steadfast.Tx, source string, ev Event, reason string, refused bool) (bool, error)
	// Requeued returns up to limit dead letters of source that an operator
	// requeued, oldest first.
	Requeued(ctx context.Context, source string, limit int) ([]Event, error)
	// Resolve, in tx, deletes the record of the failed attempts of the
	// event eventID of source, or its requeued dead letter, and reports
	// whether it was there (false: another poller resolved it, or an
	// operator discarded it).
	Resolve(ctx context.Context, tx steadfast.Tx, source, eventID string) (bool, error)
}

// Now is the cursor that an operator stores (sqlcatchup's Store.SetCursor)
// to make the poller skip to the end of the list: at its next pass it reads
// the list from its cursor to the end without applying anything, and stores
// the cursor of the last event it read. The events the provider lists later
// are applied as usual; webhooks are not affected.
const Now = "catchup:now"

// DeadLetter is an event the poller gave up on and moved its cursor past:
// its handler kept failing (WithMaxAttempts), or the event was refused for
// good (Refused). An operator requeues (the poller applies it again) or
// discards it.
type DeadLetter struct {
	Event
	// Source is the poller's source name.
	Source string
	// Position orders dead letters; list after it.
	Position int64
	// Attempts is the number of failed attempts (0 for a refused event).
	Attempts int
	// LastError is the handler's last error, or why the event was refused.
	LastError string
	// Requeued reports whether an operator requeued it (the poller applies
	// it at its next pass).
	Requeued bool
	// Refused reports an event refused for good, before its handler ran:
	// an id that the inbox refuses (an error matching idempotency.ErrInvalid
	// or idempotency.ErrTooLarge) or that is empty, over 1,024 bytes or not
	// printable UTF-8; a type over 255 bytes or not printable; a payload
	// over 1 MiB (LastError says which). Its id was not marked in the inbox.
	// The dead letter keeps what can be kept: an id that cannot be is
	// replaced by "sha256:" and the hex SHA-256 of the id (of the payload
	// when there is no id), a type that cannot be by its printable prefix,
	// and the payload's first MiB. It cannot be requeued (it would be
	// refused again): fix the cause (WithEventID, for instance), then set
	// the cursor before it to read it again.
	Refused bool
	// UpdatedAt is when it was last buried or requeued.
	UpdatedAt time.Time
}

// Cursor is where a poller stands on its source, as its store reports it
// (sqlcatchup's Store.Cursors). Durations are computed on the database's
// clock, so every replica reports the same figures.
type Cursor struct {
	// Source is the source name.
	Source string
	// Cursor is the stored cursor: the poller's next pass reads the list
	// after it ("" from the oldest event the provider keeps; Now, or Now
	// followed by ":" and a cursor, while a skip to the end is pending).
	Cursor string
	// Owner is the replica holding the lease (an opaque id), or "" when no
	// lease is live.
	Owner string
	// LeaseLeft is how long the live lease has to run (0 when none).
	LeaseLeft time.Duration
	// SinceAdvance is how long ago the cursor was last stored: at the end of
	// each page applied (each pass applies at least the overlap window
	// again), or by an operator.
	SinceAdvance time.Duration
	// Lag is the age of the newest event the poller has read and applied,
	// found applied or dead-lettered (on the database's clock, from the
	// event's creation time); 0 when no such event had a creation time.
	Lag time.Duration
	// Failing is the number of events with failed attempts that are not dead
	// letters yet: the cursor waits before the oldest.
	Failing int
	// DeadLetters is the number of dead letters (requeued ones included).
	DeadLetters int
}

// ErrLeaseLost is matched by the error of Store.Advance when the poller's
// lease of its source expired and another replica may have taken it.
var ErrLeaseLost = errors.New("catchup: lease lost")
