package outbox

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Store is the durable side of the outbox that a Relay drives. The SQL
// backends in outbox/sqloutbox implement it; outbox/outboxtest checks any
// implementation against the contract below.
//
// Time in a Store is the store's own clock (the database's now()), so that
// relays on hosts whose clocks disagree still agree on leases and schedules;
// delays are therefore passed as durations.
//
// Every method is safe for concurrent use, by any number of relays in any
// number of processes.
type Store interface {
	// Claim takes up to req.Limit ready messages and leases them to the
	// caller for req.Lease under a fresh token. A message is ready when it
	// is pending, its earliest delivery time and any earlier lease have
	// passed, its topic is not in req.Exclude, and, if it has a partition
	// key, no message of the same key with a lower position is pending
	// (claimed or not). Claim counts the attempt. It never returns the same
	// message to two callers while a lease is live.
	Claim(ctx context.Context, req ClaimRequest) ([]Claimed, error)
	// Settle writes the outcomes back, each guarded by the token of the
	// claim it belongs to: an outcome whose message was claimed again by
	// someone else since (its lease expired) is rejected. Settle returns a
	// *LeaseLostError (matching ErrLeaseLost) when some were rejected; the
	// others are applied.
	Settle(ctx context.Context, outcomes []Outcome) error
	// Cleanup deletes up to limit delivered messages that were delivered
	// more than retention ago and returns how many it deleted. It never
	// deletes a pending, claimed or dead message, and concurrent callers do
	// not wait for each other.
	Cleanup(ctx context.Context, retention time.Duration, limit int) (int, error)
	// Stats reports the backlog.
	Stats(ctx context.Context) (Stats, error)
}

// DeadLetters is what an operator does with dead letters. The SQL backends in
// outbox/sqloutbox implement it alongside Store.
type DeadLetters interface {
	// ListDead returns up to limit dead letters of topic (all topics when
	// empty) with a position above after, in position order.
	ListDead(ctx context.Context, topic string, after int64, limit int) ([]Record, error)
	// Get returns the message with id in whatever state it is, or an error
	// matching ErrNotFound.
	Get(ctx context.Context, id string) (Record, error)
	// Requeue makes the dead letters with the given ids pending again, ready
	// now, with their attempts reset; it returns how many it requeued. Ids
	// that are not dead letters are left alone. It is atomic: either all the
	// named dead letters are requeued or none.
	Requeue(ctx context.Context, ids ...string) (int, error)
	// Discard deletes the dead letters with the given ids and returns how
	// many it deleted. Ids that are not dead letters are left alone.
	Discard(ctx context.Context, ids ...string) (int, error)
}

// ClaimRequest says what Store.Claim takes.
type ClaimRequest struct {
	// Limit is the most messages to claim; at least 1.
	Limit int
	// Lease is how long the claim lasts; after it another relay may claim
	// the messages again.
	Lease time.Duration
	// Exclude lists topics not to claim (paused or saturated destinations).
	Exclude []string
}

// Claimed is a message leased by Store.Claim.
type Claimed struct {
	Delivery
	// Token is the claim's fencing token; Settle must present it.
	Token string
	// TraceParent is the W3C traceparent stored at enqueue, or empty.
	TraceParent string
	// Malformed, when not nil, says why the stored row could not be read
	// into a Message (the relay dead-letters it with this reason).
	Malformed error
}

// OutcomeKind says what happened to a claimed message.
type OutcomeKind uint8

// The kinds of Outcome.
const (
	// Delivered: the publisher confirmed the message; it is done.
	Delivered OutcomeKind = iota + 1
	// Reschedule: the message becomes ready again after Delay, with LastError
	// recorded; when Refund is set its attempt is given back (a paused
	// destination, a relay that stopped before publishing).
	Reschedule
	// Dead: the message becomes a dead letter with LastError as the reason.
	Dead
)

// Outcome is the write-back of one claimed message.
type Outcome struct {
	// Position and Token identify the claimed message.
	Position int64
	Token    string
	// Kind says what happened.
	Kind OutcomeKind
	// Delay is how long a rescheduled message waits before it is ready.
	Delay time.Duration
	// Refund gives back the attempt the claim counted (Reschedule only).
	Refund bool
	// LastError is recorded with a rescheduled or dead message.
	LastError string
}

// Stats is a snapshot of a store's backlog.
type Stats struct {
	// Pending is the number of messages not yet delivered nor dead, claimed
	// or not.
	Pending int64
	// OldestPendingAge is the age of the oldest pending message (0 when
	// there is none).
	OldestPendingAge time.Duration
	// Dead is the number of dead letters.
	Dead int64
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

// ErrLeaseLost is matched by the error of Store.Settle when a write-back was
// rejected because its claim's lease had expired and another relay claimed
// the message since.
var ErrLeaseLost = errors.New("outbox: lease lost")

// ErrNotFound is matched by the error of DeadLetters.Get for an unknown id.
var ErrNotFound = errors.New("outbox: message not found")

// LeaseLostError is returned by Store.Settle when some outcomes were rejected
// by their token. It matches ErrLeaseLost.
type LeaseLostError struct {
	// Rejected is the number of outcomes rejected.
	Rejected int
}

// Error says how many write-backs were rejected.
func (e *LeaseLostError) Error() string {
	return "outbox: lease lost: " + strconv.Itoa(e.Rejected) + " write-back(s) rejected by their token"
}

// Is reports whether target is ErrLeaseLost.
func (e *LeaseLostError) Is(target error) bool { return target == ErrLeaseLost }
