// Package rabbitpub is an outbox publisher for RabbitMQ (AMQP 0-9-1), and the
// consumer-side helper that makes processing of its messages exactly-once
// through an inbox.
//
// Publish sends each message to the publisher's exchange with the message's
// topic as routing key, the message id as the AMQP message-id property,
// persistent delivery mode and the mandatory flag, on a channel in confirm
// mode. It returns nil only when the broker confirmed the message (basic.ack)
// and did not return it as unroutable: a message that no queue would receive
// is an error (ErrReturned), never a silent loss, and the relay tries it
// again later. A message that cannot be published whatever the broker's state
// (AMQP cannot frame it, or it is larger than the broker accepts) is a
// permanent error: the relay dead-letters it at once.
//
// The publisher keeps one connection. When the connection or its channel
// drops, the publish in flight fails (its confirmation is lost, so the relay
// publishes it again: consumers deduplicate by message id), and the next
// Publish dials again. Nothing runs in the background except the reader of
// returned messages, which lives as long as its channel; Close ends it.
//
// Consume runs a handler once per message id inside the inbox transaction of
// idempotency/sqlstore; Position reads the outbox position the relay attaches
// to every message, for an ordering guard (sqlstore.ApplyVersion) that drops
// a message older than the last one applied for its key.
package rabbitpub
