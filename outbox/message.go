package outbox

import (
	"context"
	"database/sql"
	"time"
)

// Message is one event to deliver. Its ID is a UUIDv7, assigned at enqueue
// when empty, and stays the same across every delivery attempt: consumers use
// it as their idempotency key.
type Message struct {
	// ID is the message's UUIDv7. Empty means "assign one at enqueue".
	ID string
	// Topic says what the message is about, as the publisher understands
	// it: a subject, an exchange, a topic, an endpoint name. Required.
	Topic string
	// Destination names where the message goes, as the application sees
	// it: an endpoint, a tenant's subscription, a subject. A destination is
	// the unit of isolation: its pause (see Pause) and its share of the
	// relay's publishing slots are its own. Empty means Topic.
	Destination string
	// Key is the optional partition key. Messages with the same key are
	// delivered one at a time, in the order their transactions committed.
	Key string
	// Headers travel with the message to the publisher. They must be HTTP
	// fields (RFC 9110): each name a token (letters, digits and
	// !#$%&'*+-.^_`|~), each value UTF-8 text without control characters
	// (tab aside) and without leading or trailing space or tab; at most 100
	// of them, 64 KiB in all. A store's Enqueue refuses others with
	// ErrInvalid, and a row read back with others is dead-lettered
	// unpublished.
	Headers map[string]string
	// Payload is the message body.
	Payload []byte
	// NotBefore, when set, is the earliest time the message may be delivered.
	NotBefore time.Time
}

// Delivery is a message handed to a Publisher, with what the relay knows of
// its history. Its Destination is always set (to the Topic when the message
// named none).
type Delivery struct {
	Message
	// Attempt is 1 for the first delivery attempt, 2 for the next, and so
	// on. An attempt is a publish whose outcome was written back: a relay
	// that died while it held the message (a claim abandoned) spent none,
	// so the same Attempt may be published again after a crash.
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
//   - an error with Permanent() bool returning true: dead-letter now (a
//     message that cannot be sent as it is: a request that cannot be built,
//     a payload the broker refuses as malformed);
//   - an error matching ErrPaused (see Pause): the destination cannot take
//     messages now; the message waits without spending an attempt;
//   - an error with RetryAfter() time.Duration: try again after that delay;
//   - any other error: try again after the relay's backoff.
//
// Publish must honour ctx: the relay cuts a publish off at its timeout. It
// may be called from several goroutines at once.
type Publisher interface {
	Publish(ctx context.Context, d Delivery) error
}

// Inbox is the consumer side of exactly-once effects: a store that records,
// in the consumer's own transaction, which messages a consumer has
// processed. idempotency/sqlstore implements it; the broker packages'
// Consume functions take one.
type Inbox interface {
	// Process runs fn in a transaction of its own for the message messageID
	// of consumer, at most once: it marks the message processed in that
	// transaction and commits with fn's writes. For a message already
	// processed it runs nothing and returns duplicate true. When fn fails,
	// nothing is committed and Process returns fn's error.
	Process(ctx context.Context, consumer, messageID string, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error)
}
