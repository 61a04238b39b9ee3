package outbox

import (
	"context"
	"strconv"
	"time"

	"github.com/steadfast-go/steadfast/outbox/backend"
)

// Store is the durable side of the outbox: what a Relay drives and what an
// operator inspects. Removing delivered messages after a retention is not
// the relay's work: package housekeeping schedules it once for a
// deployment (sqloutbox.Store.Cleanup). *sqloutbox.Store implements it on PostgreSQL, SQLite
// and MySQL/MariaDB; a store of your own implements it with the types of
// package backend, and outbox/outboxtest checks it against this contract.
// Users only hand a store to NewRelay and call its operator methods.
//
// Time in a Store is the store's own clock (the database's), so that relays
// on hosts whose clocks disagree still agree on leases and schedules: delays
// are passed as durations.
//
// Every method is safe for concurrent use, by any number of relays in any
// number of processes.
//
// A store may also have the method
//
//	SettleAndClaim(ctx context.Context, outcomes []backend.Outcome, lease time.Duration, claimed func(Delivery, backend.Claim)) (refused []int64, err error)
//
// which is Settle, and also claims for the caller, as Claim does (a fresh
// token, the lease), the next message of each key whose message the
// outcomes delivered or dead-lettered, when it may be published now. A
// relay calls it instead of Settle for write-backs that finish keyed
// messages, and publishes what it claims: the next message of a key then
// costs no claim of its own (sqloutbox has it on PostgreSQL). A full relay
// whose last claim came back full calls Settle instead, so that its claims
// take the oldest ready messages of every key rather than the next ones of
// the keys it holds. When it
// claimed the next message of every key the outcomes finished, the relay
// takes it that the write-back made no message of those keys ready, and
// does not claim again for them until something else wakes it.
type Store interface {
	// Claim takes up to req.Limit ready messages, leases them to the caller
	// for req.Lease under a fresh token, and calls claimed once for each
	// (after the claim is durable, in position order). A message is ready
	// when it is pending, its earliest delivery time and any earlier lease
	// have passed, its destination is not in req.Exclude, and, if it has a
	// partition key, no message of the same key with a lower position is
	// pending (claimed or not). It never hands one message to two callers
	// while a lease is live. Delivery.Attempt is the number of delivery
	// attempts made so far plus one. The relay owns the deliveries it is
	// given, their Headers map included (it adds PositionHeader to it): a
	// store that keeps a map hands a copy.
	Claim(ctx context.Context, req backend.ClaimRequest, claimed func(Delivery, backend.Claim)) error
	// Settle writes the outcomes back, each guarded by the token of the
	// claim it belongs to: an outcome whose message was claimed again by
	// someone else since (its lease expired), or is no longer pending, is
	// refused; the others are applied. It returns the positions of the
	// refused outcomes.
	Settle(ctx context.Context, outcomes []backend.Outcome) (refused []int64, err error)
	// Pauses lists the destinations paused now (by an outcome of kind
	// backend.Pause, from any relay), with the store's time turned into
	// this host's: Until is the host's clock plus the time the pause has
	// left in the store.
	Pauses(ctx context.Context) ([]PausedDestination, error)
	// Stats reports the backlog.
	Stats(ctx context.Context) (Stats, error)

	// ListDead returns up to limit dead letters of topic (all topics when
	// empty) with a position above after, in position order.
	ListDead(ctx context.Context, topic string, after int64, limit int) ([]Record, error)
	// Get returns the message with id in whatever state it is, or an error
	// matching ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// Requeue makes the dead letters with the given ids pending again, ready
	// now, with their attempts reset; it returns how many it requeued. Ids
	// that are not dead letters are left alone. It is atomic: either all the
	// named dead letters are requeued or none. A requeued message keeps its
	// id (consumers' inboxes still recognise it) and takes a new position at
	// the tail of its key, as if enqueued now: it is not delivered while a
	// message of its key is pending, so a key never has two messages in
	// flight. Consumers that guard on positions see it as the newest of its
	// key; what its payload says (its own version or time) decides whether
	// it is still news.
	Requeue(ctx context.Context, ids ...string) (int, error)
	// Discard deletes the dead letters with the given ids and returns how
	// many it deleted. Ids that are not dead letters are left alone.
	Discard(ctx context.Context, ids ...string) (int, error)
	// Resume lifts the pauses of the given destinations and returns how
	// many were paused: their messages are claimable at once, by every
	// relay (relays that hold some learn it within their poll interval).
	Resume(ctx context.Context, destinations ...string) (int, error)
}

// PausedDestination is a destination whose messages no relay claims until
// Until, or until an operator resumes it (Store.Resume, outboxctl resume).
type PausedDestination struct {
	// Destination is the paused destination (see Message.Destination).
	Destination string
	// Until is when the pause ends by itself, on this host's clock.
	Until time.Time
	// Reason is the publisher's error that paused it, such as a 410 Gone.
	Reason string
}

// Stats is a snapshot of a store's backlog: the totals of the store
// (Store.Stats), or those of one topic and destination (a SQL store's
// StatsByDestination).
type Stats struct {
	// Topic and Destination name the messages counted, when the figures
	// are those of one topic and destination; empty in the totals.
	Topic, Destination string
	// Pending is the number of messages not yet delivered nor dead, claimed
	// or not.
	Pending int64
	// OldestPendingAge is the age of the oldest pending message (0 when
	// there is none).
	OldestPendingAge time.Duration
	// Dead is the number of dead letters.
	Dead int64
	// InFlight is the number of pending messages claimed by a relay whose
	// lease has not expired. Filled by StatsByDestination; 0 in the totals.
	InFlight int64
}

// State is where a stored message stands.
type State uint8

// The states of a stored message.
const (
	// StatePending: waiting, claimed or backing off.
	StatePending State = iota
	// StateDelivered: the publisher confirmed it.
	StateDelivered
	// StateDead: a dead letter, until requeued or discarded.
	StateDead
)

// String returns "pending", "delivered" or "dead".
func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateDelivered:
		return "delivered"
	case StateDead:
		return "dead"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Record is a stored message as an operator sees it.
type Record struct {
	Message
	// Position is the message's place in the outbox (see Delivery.Position).
	Position int64
	// State is where the message stands.
	State State
	// Attempts is the number of delivery attempts made so far.
	Attempts int
	// LastError is the error of the last failed attempt, or the reason it
	// became a dead letter.
	LastError string
	// CreatedAt is when the message was enqueued.
	CreatedAt time.Time
	// AvailableAt is when the message is next ready (pending messages).
	AvailableAt time.Time
	// DoneAt is when the message was delivered or dead-lettered.
	DoneAt time.Time
}
