// Package sqlstore is a durable idempotency.Store on PostgreSQL, SQLite or
// MySQL/MariaDB through database/sql, with the transactional path
// (idempotency.TxStore) and the consumer side: an inbox and an ordering guard.
//
// # Setup
//
// Open the database with its driver (this package imports none), create the
// store with New and its tables with Migrate:
//
//	db, err := sql.Open("sqlite", steadfast.SQLiteDSN("app.db"))   // modernc.org/sqlite
//	db, err := sql.Open("pgx", "postgres://...")                   // github.com/jackc/pgx/v5/stdlib
//	db, err := sql.Open("mysql", "user@tcp(host:3306)/db")        // github.com/go-sql-driver/mysql
//	store, err := sqlstore.New(db, steadfast.SQLite)
//	err = store.Migrate(ctx)
//
// Store.Schema returns the same SQL for users who run their own migration
// tool; the templates are under migrations/<dialect>/ in the module source.
// WithTable names the tables ("name" or "schema.name"). On PostgreSQL the
// schema also holds a function beside the tables, {table}_claim, which the
// claim statement calls to insert a new claim (drop it with DROP FUNCTION
// when you drop the tables).
//
// An application that uses pgxpool can hand the store a *sql.DB over the
// same pool with stdlib.OpenDBFromPool. (A native pgxpool path was measured
// against pgx's database/sql driver on the store's statements and was not
// faster: the round trips and commits dominate.) On SQLite keep the pool
// small (db.SetMaxOpenConns(4)): the database has one writer, and more
// connections only queue for it.
//
// # Records and time
//
// One row per key holds the fingerprint, the status, the fencing token (a
// random 63-bit number, compared for equality), the lease and expiry times
// and the stored response. Claims are single atomic statements: on
// PostgreSQL a read of the key's row that inserts a claim (through
// {table}_claim, INSERT ... ON CONFLICT DO NOTHING) only when there is
// none, so that a new key and a replay are one round trip each and a
// replay costs about a SELECT; INSERT ... ON CONFLICT DO UPDATE ... WHERE on
// SQLite, ON DUPLICATE KEY UPDATE on MySQL. A claim never deletes or
// overwrites a live record.
//
// Every time is the database server's, taken by the statement that writes
// or compares it (clock_timestamp() on PostgreSQL, whose now() would be the
// transaction's start; UTC_TIMESTAMP(6) on MySQL/MariaDB; julianday('now')
// on SQLite), stored as Unix microseconds. The store passes only durations
// (lease, retention) and never reads the application's clock, so replicas
// whose clocks disagree never take over each other's live claims. A record
// reports what is left of its lease or retention (idempotency.Record.TTL).
//
// Expired records stay in the table, invisible to Get and claimable by the
// next claimer, until Purge deletes them in bounded batches.
//
// # Limits
//
// Keys, message ids and entities of 1 to 1024 bytes; fingerprints,
// consumer names and tie-breaks of at most 255 bytes; responses of at most
// WithMaxResponseSize (4 MiB by default). Longer input is refused with an
// error wrapping idempotency.ErrTooLarge, empty input with one wrapping
// idempotency.ErrInvalid; nothing is truncated.
//
// # The transactional path
//
// With idempotency.WithTransaction, the middleware and Do claim the key
// inside a new transaction (BeginTx). The handler writes its business rows
// in the same transaction (idempotency.TxFrom returns it) and the response
// is stored and committed once: the record and the writes commit or roll
// back together. A crash before the commit leaves nothing (the next delivery
// runs again); a crash after it leaves a completed record (the next delivery
// replays). This turns "at least once" into "effectively once" for work
// whose effects live in the same database. idempotency.TxFrom documents the
// rules. ClaimIn and CompleteIn do the same in a transaction the caller
// manages (a steadfast.Tx: *sql.Tx, sqlx's or bun's transactions).
//
// # The consumer side
//
// MarkProcessed inserts (consumer, message id) in the caller's transaction
// and reports whether it was the first; Process wraps a handler in that
// transaction. ApplyVersion and ApplyTimestamp are the ordering guard: they
// advance an entity's last applied position only when an event is newer, and
// report stale events with applied false.
//
// # Faults
//
// Deadlocks (MySQL/MariaDB 1213, PostgreSQL 40P01), lock wait timeouts and
// SQLite busy errors are retried with a fresh transaction (WithRetryAttempts);
// a failure to begin a transaction (after a database restart, every pooled
// connection is broken) is tried again at once on another connection;
// every other error is returned wrapped, and nothing is marked done that did
// not commit.
package sqlstore
