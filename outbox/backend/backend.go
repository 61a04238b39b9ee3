package backend

import "time"

// ClaimRequest says what outbox.Store.Claim takes.
type ClaimRequest struct {
	// Limit is the most messages to claim; at least 1.
	Limit int
	// Lease is how long the claim lasts unless extended (see Extend): after
	// it another relay may claim the messages again. Positive.
	Lease time.Duration
	// Exclude lists destinations not to claim now (those the relay already
	// holds as many messages of as it may).
	Exclude []string
}

// Claim is what outbox.Store.Claim knows of one claimed message beyond the
// outbox.Delivery it hands to the relay.
type Claim struct {
	// Token is the claim's fencing token: every Outcome of the message must
	// present it, and is refused once another claim took the message over.
	Token string
	// Abandoned is how many earlier claims of the message ended without an
	// outcome (their lease expired: the relay died or stalled).
	Abandoned int
	// TraceParent is the W3C traceparent stored at enqueue, or empty.
	TraceParent string
	// Malformed, when not nil, says why the stored row could not be read as
	// a valid message; the relay dead-letters it (DeadUnsent) with this
	// reason, without publishing it.
	Malformed error
}

// OutcomeKind says what happened to a claimed message.
type OutcomeKind uint8

// The kinds of Outcome. "Counts an attempt" means the message's delivery
// attempts (outbox.Record.Attempts) grow by one.
const (
	// Delivered: the publisher confirmed the message; it is done. Counts an
	// attempt.
	Delivered OutcomeKind = iota + 1
	// Retry: the publish failed; the message becomes ready again after
	// Delay, with Error recorded. Counts an attempt.
	Retry
	// Dead: the publish failed for good; the message becomes a dead letter
	// with Error as the reason. Counts an attempt.
	Dead
	// DeadUnsent: the relay dead-letters the message without publishing it
	// (it could not be read, or its claims were abandoned too often), with
	// Error as the reason. Counts no attempt.
	DeadUnsent
	// Release: the relay gives the message back unpublished (it is
	// stopping, or the destination is paused): it is ready again at once,
	// keeping its attempts, and the claim does not count as abandoned.
	Release
	// Pause: Release, and the message's destination is paused for Delay,
	// with Error as the reason: no relay claims its messages until the pause
	// ends or is lifted.
	Pause
	// Extend: the claim's lease is renewed: it now ends Delay from now. The
	// message stays claimed under the same token.
	Extend
)

// Outcome is the write-back of one claimed message.
type Outcome struct {
	// Position and Token identify the claimed message.
	Position int64
	Token    string
	// Kind says what happened.
	Kind OutcomeKind
	// Delay is how long a Retry waits before the message is ready, how long
	// a Pause holds the destination, or the new lease of an Extend.
	Delay time.Duration
	// Error is recorded with a Retry, Dead or DeadUnsent message (the last
	// error, or the reason it became a dead letter) and as a Pause's reason.
	Error string
	// Yield, on an outcome that finishes a keyed message (Delivered, Dead,
	// DeadUnsent), asks a write-back that claims the next message of each
	// key it finishes (sqloutbox's SettleAndClaim) to leave this key's
	// next message to any relay's claims instead: it waits its turn behind
	// the messages already ready. Settle ignores it.
	Yield bool
}
