// Package catchup finds the events a provider never delivered and applies
// them exactly once.
//
// Webhooks get lost: a provider gives up after its retry schedule, disables
// an endpoint that failed too often, or drops a delivery. Every serious
// provider's advice is to treat webhooks as a hint and reconcile against its
// list of events. A Poller does that: it reads the provider's list (a
// Source; HTTPSource reads the common shapes of cursor-paged JSON lists)
// from a durable cursor, and applies each event with the same HandlerFunc as
// the webhook route (Poller.WebhookHandler). Both paths mark the provider's
// event id in the same inbox, in the transaction of the event's effects, so
// an event is applied once, by whichever path comes first; the other skips
// it (a webhook is answered 2xx).
//
// # Guarantees
//
//   - The cursor advances in the transaction of the page's effects: a
//     crash, a provider error (a 429 or a 5xx, retried through package
//     retry) or a failing handler never moves it past an event not applied.
//   - Lists are eventually consistent: an event may appear after later
//     ones. The cursor the poller stores trails the newest event it read by
//     an overlap window (by time, WithOverlap, or by count,
//     WithOverlapEvents), so the next pass reads the window again; the
//     inbox absorbs the repeats.
//   - One poller per source polls across all replicas: the holder of the
//     source's lease, a row of the store compared on the database's clock.
//     When it dies, another replica takes over once the lease ran out.
//   - An event whose handler keeps failing does not stall the cursor
//     forever: after WithMaxAttempts attempts it becomes a dead letter
//     (listed, requeued and discarded with catchup/sqlcatchup's Store) and
//     the cursor moves on.
//   - What a provider sends is bounded: an event without an id, with an id
//     the inbox refuses or one over 1,024 bytes, a type over 255 bytes, an
//     id or type that is not printable UTF-8, or an event over 1 MiB is
//     refused for good: the poller makes it a dead letter at once
//     (DeadLetter.Refused) and moves on; the webhook route answers it 400
//     (413 for the size).
//
// # Operators
//
// catchup/sqlcatchup's Store reports each source's cursor, lease holder and
// lag (Cursors), sets a cursor or skips to the end of the list (SetCursor,
// Now) while a poller runs, and lists, requeues and discards dead letters.
//
// # Refetch on doubt
//
// Where an entity's versions are consecutive, Refetcher.ApplyVersion is the
// ordering guard that also reports a gap (a version skipped) and then
// enqueues, through the outbox, in the same transaction, a refetch of the
// entity; the application may enqueue one itself (Refetcher.Enqueue). The
// Refetcher, as the outbox relay's publisher, fetches the object's current
// state and applies it through the guard at the object's own provider
// version or update time.
//
// # Stores
//
// The cursor, the lease and the dead letters live in a Store:
// catchup/sqlcatchup on PostgreSQL, SQLite and MySQL/MariaDB. The inbox and
// the ordering guard are idempotency/sqlstore's; the outbox is
// outbox/sqloutbox's. All can share one database, so that one transaction
// holds an event's effects, its inbox row, the cursor and any refetch.
//
// # Telemetry
//
// Metrics go through the OpenTelemetry API (WithMeterProvider): the lag
// (age of the newest event read, on this process's clock; Cursors reports
// it on the database's), pages, events applied and skipped as duplicates,
// and dead letters. Logs go through log/slog (WithLogger): nothing per
// event.
package catchup
