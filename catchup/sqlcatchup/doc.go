// Package sqlcatchup is the SQL store of catchup pollers, on PostgreSQL,
// SQLite and MySQL/MariaDB: each source's cursor and lease, and the events
// whose handler failed (attempts, then dead letters that operators list,
// requeue and discard).
//
// The store imports no driver: open the database with the dialect's driver
// (pgx's stdlib, modernc.org/sqlite, go-sql-driver/mysql) and pass it to New.
// Keep it in the database of the inbox (idempotency/sqlstore) and of the
// application's own tables, so that one transaction holds an event's
// effects, its inbox row and the cursor.
//
// Every lease time is computed and compared in SQL on the database's clock
// (stored as Unix microseconds), never on a replica's.
//
// # Operators
//
// Cursors reports where each source's poller stands (cursor, lease holder,
// lag, failing events, dead letters); SetCursor moves a source's cursor,
// or skips to the end of its list (catchup.Now), safely while a poller
// runs. ListDead, Requeue and Discard handle dead letters, as the outbox's
// store does. PurgeFailing deletes records of failed attempts that no
// poller will resolve: schedule it with housekeeping.
package sqlcatchup
