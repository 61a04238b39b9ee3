// Package sqlstore is a durable idempotency.Store on PostgreSQL, SQLite or
// MySQL/MariaDB through database/sql, with the transactional path
// (idempotency.TxStore) and the consumer side: an inbox and an ordering guard.
//
// # Setup
//
// Open the database with its driver (this package imports none), create the
// store with New and its tables with Migrate:
//
//	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN("app.db"))   // modernc.org/sqlite
//	db, err := sql.Open("pgx", "postgres://...")                   // github.com/jackc/pgx/v5/stdlib
//	db, err := sql.Open("mysql", "user@tcp(host:3306)/db")        // github.com/go-sql-driver/mysql
//	store, err := sqlstore.New(db, sqlstore.SQLite)
//	err = store.Migrate(ctx)
//
// Schema returns the same SQL for users who run their own migration tool; the
// files are under migrations/<dialect>/ in the module source.
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
// and the stored response. Claims are single atomic statements
// (INSERT ... ON CONFLICT DO UPDATE ... WHERE, or ON DUPLICATE KEY UPDATE on
// MySQL); a claim never deletes or overwrites a live record.
//
// Times are Unix nanoseconds read from the application's clock (WithClock),
// not the database's, so that tests can drive the store with a fake clock.
// Replicas sharing a store need synchronised clocks; leases and retention
// are far longer than the skew NTP leaves.
//
// Expired records stay in the table, invisible to Get and claimable by the
// next claimer, until Purge deletes them in bounded batches.
//
// # The transactional path
//
// ClaimTx claims a key inside a new transaction. The caller writes its
// business rows in the same transaction (TxFrom(ctx) returns it inside the
// idempotency middleware and Do) and Tx.Commit stores the response and
// commits once: the record and the writes commit or roll back together. A
// crash before the commit leaves nothing (the next delivery runs again); a
// crash after it leaves a completed record (the next delivery replays). This
// turns "at least once" into "effectively once" for work whose effects live
// in the same database. ClaimIn and CompleteIn do the same in a transaction
// the caller manages (anything that satisfies the ExecContext/QueryContext
// interface: *sql.Tx, *sql.Conn, sqlx.Tx, bun.Tx).
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
// every other error is returned wrapped, and nothing is marked done that did
// not commit. Input the schema cannot hold gets ErrTooLarge or ErrInvalid,
// never a truncation.
package sqlstore
