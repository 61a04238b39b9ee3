package outbox

import (
	"context"
	"time"
)

// Message is one event to deliver. Its ID is a UUIDv7, assigned at enqueue
// when empty, and stays the same across every delivery attempt: consumers use
// it as their idempotency key.
type Message struct {
	// ID is the message's UUIDv7. Empty means "assign one at enqueue".
	ID string
	// Topic names the destination: a subject, an exchange, a topic, or an
	// endpoint name, as the publisher understands it. Required.
	Topic string
	// Key is the optional partition key. Messages with the same key are
	// delivered in the order their transactions committed.
	Key string
	// Headers travel with the message to the publisher.
	Headers map[string]string
	// Payload is the message body.
	Payload []byte
	// NotBefore, when set, is the earliest time the message may be delivered.
	NotBefore time.Time
}

// Delivery is a message handed to a Publisher, with what the relay knows of
// its history.
type Delivery struct {
	Message
	// Attempt is 1 for the first delivery attempt, 2 for the next, and so on.
	Attempt int
	// CreatedAt is when the message was enqueued.
	CreatedAt time.Time
	// Position is the message's place in the outbox: it increases with
	// commit order among the messages of one partition key. The relay also
	// sends it in the PositionHeader header, for consumers' ordering guards.
	Position int64
}

// PositionHeader is the header in which the relay passes Delivery.Position
// (decimal) to the publisher, so that consumers can drop a message older
// than the last one they applied for its key.
const PositionHeader = "outbox-position"

// Publisher delivers messages to a destination. Publish returns nil only once
// the broker or endpoint has confirmed the message. Otherwise its error tells
// the relay what to do, through the error protocol of package retry and the
// sentinels of this package:
//
//   - an error with RetryAfter() time.Duration: try again after that delay;
//   - an error with Permanent() bool returning true: dead-letter now;
//   - an error matching ErrPaused (see Pause): the destination is unavailable;
//     the message waits without spending an attempt;
//   - any other error: try again after the relay's backoff.
//
// Publish must honour ctx: the relay cuts a publish off at its timeout. It
// may be called from several goroutines at once.
type Publisher interface {
	Publish(ctx context.Context, d Delivery) error
}
