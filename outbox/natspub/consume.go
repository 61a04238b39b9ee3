package natspub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/steadfast-go/steadfast/outbox"
)

// ErrNoMessageID is returned by Consume for a message without a Nats-Msg-Id
// header: it was not published by this package and cannot be deduplicated.
var ErrNoMessageID = errors.New("natspub: message has no Nats-Msg-Id")

// Consume processes msg at most once for consumer: it runs fn inside the
// inbox's transaction, keyed by the message's Nats-Msg-Id, and acknowledges
// msg once the transaction committed (waiting for the server to confirm the
// acknowledgement), or at once when the inbox says the
// message was already processed (duplicate is then true and fn did not run).
//
// If fn or the inbox fails, the transaction rolls back, msg is negatively
// acknowledged so that JetStream redelivers it, and the error is returned.
// A message without Nats-Msg-Id is terminated (never redelivered) and
// ErrNoMessageID is returned. A nil inbox or fn is an error (msg is
// negatively acknowledged). fn's effects must stay inside tx: they commit
// with the inbox record, or not at all.
//
// Call it from a jetstream.MessageHandler or a Fetch loop; it is safe for
// concurrent use.
func Consume(ctx context.Context, inbox outbox.Inbox, consumer string, msg jetstream.Msg, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error) {
	if msg == nil {
		return false, errors.New("natspub: Consume: msg is nil")
	}
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if id == "" {
		return false, errors.Join(ErrNoMessageID, msg.Term())
	}
	if inbox == nil || fn == nil {
		return false, errors.Join(errors.New("natspub: Consume: the inbox and fn are required"), msg.Nak())
	}
	duplicate, err = inbox.Process(ctx, consumer, id, fn)
	if err != nil {
		if nakErr := msg.Nak(); nakErr != nil {
			err = errors.Join(err, fmt.Errorf("natspub: nak %s: %w", id, nakErr))
		}
		return false, err
	}
	if err := msg.DoubleAck(ctx); err != nil {
		// Processed and committed; the redelivery an unacknowledged message
		// gets will be recognised as a duplicate.
		return duplicate, fmt.Errorf("natspub: ack %s: %w", id, err)
	}
	return duplicate, nil
}

// Position returns the outbox position of msg (its outbox.PositionHeader
// header, set by the relay), for an ordering guard such as
// sqlstore.ApplyVersion keyed by the message's partition key. ok is false
// when msg has no valid position.
func Position(msg jetstream.Msg) (pos int64, ok bool) {
	if msg == nil {
		return 0, false
	}
	v := msg.Headers().Get(outbox.PositionHeader)
	pos, err := strconv.ParseInt(v, 10, 64)
	return pos, err == nil
}
