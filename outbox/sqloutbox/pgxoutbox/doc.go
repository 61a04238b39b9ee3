// Package pgxoutbox serves the PostgreSQL outbox of package sqloutbox to
// programs that use pgx directly (github.com/jackc/pgx/v5 and pgxpool):
// Enqueue writes messages in a pgx.Tx, and a Listener wakes relays with
// PostgreSQL's LISTEN/NOTIFY. It is the only outbox package that imports
// pgx: a program that does not import it links no pgx through the outbox
// (sqloutbox itself imports no driver).
//
// The store is still made by sqloutbox.New over a *sql.DB (pgx's stdlib
// driver, or any database/sql driver for PostgreSQL); the relay and the
// operators use it as they would without this package.
package pgxoutbox
