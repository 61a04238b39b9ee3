// Package natspub is an outbox publisher for NATS JetStream, and the
// consumer-side helper that makes processing of its messages exactly-once
// through an inbox.
//
// Publish sends each message to the subject named by its topic with the
// message id in the Nats-Msg-Id header, and returns nil only once the stream
// acknowledged it. The stream deduplicates on that header within its
// duplicate window, so a message the relay publishes twice (it died after
// publishing and before recording the delivery, or the acknowledgement was
// lost) is stored once, as long as the second publish comes within the
// window. New therefore checks that the stream's duplicate window outlasts the
// relay's longest redelivery delay (WithMaxRedeliveryDelay) and refuses the
// stream otherwise, unless WithShortDuplicateWindow accepts the risk, which
// is then logged at error level.
//
// On the consuming side, Consume runs a handler once per (consumer, message
// id) inside the inbox transaction of idempotency/sqlstore, then acknowledges
// the message: a redelivery, or a duplicate that slipped past the window, is
// acknowledged without running the handler again.
//
// Position reads the outbox position the relay attaches to every message,
// for an ordering guard (sqlstore.ApplyVersion) that drops a message older
// than the last one applied for its key.
package natspub
