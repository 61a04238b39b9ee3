// Package housekeeping keeps steadfast's tables bounded: one Sweeper, started
// once per process, removes in bounded batches every row that is past its
// time, so that nothing grows forever and nothing is removed early.
//
// What it removes, each enabled by an option naming the store that owns the
// rows (the statements belong to the stores; the Sweeper only schedules
// them):
//
//   - WithIdempotency: expired idempotency records (completed records past
//     their retention, claims abandoned past the store's abandoned-claim
//     retention). A live claim is never removed.
//   - WithInbox: inbox rows (consumer, message id) older than a retention.
//     The retention must outlast every way the same message can come back:
//     the provider's retry horizon (Stripe retries for about three days),
//     a broker's redelivery or dedup window, and the catch-up poller's
//     overlap window (catchup.WithOverlap). An inbox row removed earlier
//     lets a late duplicate run its effect twice. Seven days or more is a
//     sane start.
//   - WithOutbox: delivered outbox messages older than a retention. This is
//     the only cleanup of delivered messages: relays no longer run one.
//     Pending and dead messages are never removed by it.
//   - WithDeadLetters: dead letters older than a retention of their own.
//     Without this option dead letters stay until an operator requeues or
//     discards them.
//   - WithCatchup: records of catch-up events whose handler failed and
//     that were neither applied since nor buried (the event left the
//     provider's list), after a retention. Dead letters stay.
//   - WithOrderingGuard: ordering-guard rows (the last version applied per
//     entity) not updated for a retention. Off unless asked for, and read
//     its warning: a purged guard row makes a late, stale event look new.
//
// Coordination: the Sweeper takes a lease row in a table of its own (Migrate
// creates it), on the database's clock, with single statements that hold no
// session state: it works behind transaction poolers (PgBouncer in
// transaction mode) and for several processes sharing one SQLite file,
// where connection-bound advisory locks and GET_LOCK do not. One replica
// sweeps per interval; when it stops or dies, another takes over when the
// lease runs out. Correctness does not depend on the lease: every purge
// statement removes a row at most once, so replicas that overlap (a pass
// slower than its lease) remove nothing twice and their counts still add
// up.
//
// Each pass is logged (at Info when it removed rows) and counted through
// OpenTelemetry: steadfast.housekeeping.removed (rows, by kind) and steadfast.housekeeping.passes
// (by outcome: swept, skipped when another replica holds the lease, failed).
package housekeeping
