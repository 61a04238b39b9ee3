// Package outbox is a transactional outbox: messages are written in the
// caller's own database transaction, next to the business data, and a Relay
// delivers them afterwards to a Publisher, at least once, with retries,
// per-key ordering and dead letters. A rollback publishes nothing; a crash
// loses nothing that was committed.
//
// The package holds no driver. The SQL stores (PostgreSQL, SQLite,
// MySQL/MariaDB) live in outbox/sqloutbox and enqueue with a method of their
// own in the caller's steadfast.Tx (outbox/sqloutbox/pgxoutbox serves pgx
// transactions and LISTEN/NOTIFY); publishers for HTTP webhooks and brokers
// live in their own subpackages. What only the author of a store needs is in
// outbox/backend, and outbox/outboxtest checks any Store against the
// contract.
//
// # Delivery
//
// A Relay claims ready messages under a lease with a fencing token, publishes
// them outside any transaction, and writes each outcome back guarded by the
// token, so a relay whose lease expired (it was slow or dead) cannot
// overwrite the work of the relay that took the message over. The publisher's
// error says what happens next (see Publisher): retry after a backoff computed
// by retry.Delay or after the publisher's RetryAfter, dead-letter at once for
// a permanent error or after the maximum attempts, or pause the destination
// without spending attempts for ErrPaused. Every message keeps its ID across
// attempts: consumers deduplicate on it.
//
// # Order
//
// Messages with the same partition key are delivered one at a time, in the
// order of their positions, and a message is not delivered while an earlier
// one of its key is pending (waiting, claimed or backing off): a failing head
// holds its key, and only its key, until it is delivered or dead-lettered.
// Positions follow commit order within a key when the writers of a key
// serialise (the stores in outbox/sqloutbox make sure of it: see there).
// Messages without a key flow unordered. Each delivery carries its position
// in Delivery.Position and in the PositionHeader header.
//
// Across keys, ready messages are claimed oldest first, and a key takes
// turns: a store that can (sqloutbox on PostgreSQL) claims the next message
// of a key in the write-back that finishes the last one, for the same
// relay, which spares the database most of the cost of a keyed message;
// a key keeps its turn for at most 16 messages in a row, and its next
// message then waits behind those already ready. Every key gets its share,
// and no key waits behind a busy one for longer than the keys ahead of it
// take their turns: a message of another key, committed while a relay
// works through deep keys, waits for at most 16 publishes of each key the
// relay holds.
//
// # Isolation
//
// Each message has a destination (Message.Destination: the topic unless
// the application names one, such as a tenant's endpoint). Publishes run
// with bounded concurrency overall and per destination, each cut off by a
// timeout, so a slow destination holds at most its own share of the slots; a
// paused destination is not claimed at all until its pause ends.
//
// A pause (a publisher's ErrPaused: an endpoint that answered 410 Gone, an
// open circuit breaker) is recorded in the store, once per destination, so
// that every relay honours it, across restarts; the paused messages keep
// their schedule and attempts; Store.Pauses lists the pauses and
// Store.Resume lifts them (outboxctl pauses, resume).
//
// # Attempts and leases
//
// An attempt is a publish whose outcome was written back. A relay that dies
// while it holds a message spends none of its attempts: the claim is
// counted apart as abandoned, and a message abandoned WithMaxAbandoned times
// is dead-lettered unpublished. Claims are leased (WithLease) and renewed
// while their messages wait and are published, so a crashed relay's keys
// move to the others within about a lease.
package outbox
