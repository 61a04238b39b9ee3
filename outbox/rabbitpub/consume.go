package rabbitpub

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/steadfast-go/steadfast/outbox"
)

// ErrNoMessageID is returned by Consume for a delivery without a message-id
// property: it cannot be deduplicated.
var ErrNoMessageID = errors.New("rabbitpub: delivery has no message-id")

// Consume processes d at most once for consumer: it runs fn inside the
// inbox's transaction, keyed by d.MessageId, and acknowledges d once the
// transaction committed, or at once when the inbox says the message was
// already processed (duplicate is then true and fn did not run).
//
// If fn or the inbox fails, the transaction rolls back, d is negatively
// acknowledged with requeue so that the broker delivers it again, and the
// error is returned. A delivery without a message id is rejected without
// requeue (to the queue's dead-letter exchange, if it has one) and
// ErrNoMessageID is returned. A nil inbox or fn is an error (d is negatively
// acknowledged with requeue). fn's effects must stay inside tx.
//
// Consume deliveries of a channel opened without auto-ack; it is safe for
// concurrent use.
func Consume(ctx context.Context, inbox outbox.Inbox, consumer string, d amqp.Delivery, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error) {
	if d.MessageId == "" {
		return false, errors.Join(ErrNoMessageID, d.Reject(false))
	}
	if inbox == nil || fn == nil {
		err := errors.New("rabbitpub: Consume: the inbox and fn are required")
		return false, errors.Join(err, d.Nack(false, true))
	}
	duplicate, err = inbox.Process(ctx, consumer, d.MessageId, fn)
	if err != nil {
		if nackErr := d.Nack(false, true); nackErr != nil {
			err = errors.Join(err, fmt.Errorf("rabbitpub: nack %s: %w", d.MessageId, nackErr))
		}
		return false, err
	}
	if err := d.Ack(false); err != nil {
		// Processed and committed; the redelivery an unacknowledged message
		// gets will be recognised as a duplicate.
		return duplicate, fmt.Errorf("rabbitpub: ack %s: %w", d.MessageId, err)
	}
	return duplicate, nil
}

// Position returns the outbox position of d (its outbox.PositionHeader
// header, set by the relay), for an ordering guard such as
// sqlstore.ApplyVersion keyed by the message's partition key. ok is false
// when d has no valid position.
func Position(d amqp.Delivery) (pos int64, ok bool) {
	v, _ := d.Headers[outbox.PositionHeader].(string)
	pos, err := strconv.ParseInt(v, 10, 64)
	return pos, err == nil
}
