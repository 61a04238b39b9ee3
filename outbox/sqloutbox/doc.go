// Package sqloutbox stores the transactional outbox in PostgreSQL, SQLite
// (modernc.org/sqlite) or MySQL 8/MariaDB 10.6+, through database/sql. It
// imports no driver: the program imports the one it uses (pgx's stdlib,
// modernc.org/sqlite, go-sql-driver/mysql).
//
// Enqueue writes messages in the caller's transaction (a steadfast.Tx:
// *sql.Tx, or an sqlx or bun transaction; pgxoutbox.Enqueue takes a pgx.Tx),
// so they commit or roll back with the business data; a *sql.DB is refused
// by the compiler, so no message is written outside the transaction by
// mistake. EnqueueWithoutTx is the explicit call for messages that belong to
// no business transaction. Store implements outbox.Store for outbox.Relay
// and for operators (see also the outboxctl command).
//
// # Schema
//
// Migrate creates the table (WithTable names it; steadfast_outbox
// otherwise), its indexes and the table of paused destinations beside it
// ({table}_pauses; on MySQL also {table}_keys); Schema returns the same DDL
// for your own migration tool. Every message is a row with a position (a
// sequence), its UUIDv7 id, topic, destination, partition key, headers
// (JSON), payload, the W3C traceparent of the enqueuing span, a state
// (pending, delivered, dead), its delivery attempts and its claims (their
// difference is the claims abandoned by dead relays), the last error and
// the claim's token. Indexes cover only what the relay scans: on PostgreSQL
// and SQLite partial indexes over pending rows (so millions of delivered
// rows cost the claim nothing), on MySQL indexes that lead with the state.
// A delivered message is deleted by the write-back that records its
// delivery, unless WithKeepDelivered keeps it (then Cleanup deletes it after
// a retention); dead letters are kept until requeued, discarded or removed
// by CleanupDead. Cleanup and CleanupDead work in batches that skip rows
// another caller is deleting; package housekeeping schedules them.
//
// # Claims
//
// A claim takes ready messages in the order they became ready: on
// PostgreSQL and MySQL with FOR UPDATE SKIP LOCKED, so relays never wait for
// each other; on SQLite with one UPDATE ... RETURNING, atomic under SQLite's
// single writer. Claims never look for rows "after the last id seen": a
// transaction that commits late with a low position is claimed when it
// commits.
//
// # Leases and write-backs
//
// A claim stamps a fresh token and the end of its lease (leased_until, on
// the database's clock) on each message; the relay renews the lease while
// it holds the message (outbox.WithLease), and write-backs name the token
// and are refused once another relay has claimed the message since. Every
// write of the relay covers a whole batch: a claim is one statement (on
// MySQL a transaction of a locking read and one update), a write-back of a
// batch of outcomes of every kind is one statement on PostgreSQL and one
// transaction with a statement per kind of outcome on SQLite and MySQL, a
// renewal of the leases one statement.
//
// The lease is a column that no index holds, and the PostgreSQL table
// leaves half of each page free (fill factor 50), so that a claim, a
// renewal and a release rewrite the row in place (a HOT update: no new
// index entry, the old version pruned within its page); a claimed message
// stays in the ready range, and claims pass over it until its lease ends,
// which costs a claim a look at the messages in flight, never at the
// backlog. The write-back of a delivery deletes the row, the cheapest write
// there is (no new row version, no index entry). A delivery is then a HOT
// update and a delete; a retry, a dead letter, and (on PostgreSQL and
// SQLite) the unparking of a key's next message move an indexed column and
// cost a new version of the row with its index entries.
//
// Other leases were weighed and measured. Pushing the message out of the
// ready range (a claim that moves an indexed column, as earlier versions
// did) costs every claim and renewal a new entry in every index. Holding
// row locks in the claiming transaction while publishing (the "ceiling" of
// the benchmarks) writes no lease, but keeps a transaction and a connection
// busy for every batch being published, holds back vacuum, and cannot be
// renewed. Session advisory locks as leases write nothing either, but a
// lock lives on one connection: when it drops, the lock vanishes silently
// while the relay still publishes; they do not work behind a
// transaction-mode pooler, which the relay supports in poll-only mode; and
// with one lock per message in flight they fill the server's shared lock
// table (max_locks_per_transaction × max_connections entries, 6,400 by
// default) that every session shares. The attempts, the abandoned claims
// and the schedule need a row write at settle anyway.
//
// # Per-key order
//
// A message with a partition key is claimable only while no message of its
// key with a lower position is pending (waiting, claimed or backing off), so
// a key has one message in flight at a time, across all relays, in position
// order. Positions are commit order within a key because Enqueue serialises
// the writers of a key: on PostgreSQL with a transaction-scoped advisory lock
// per key (pg_advisory_xact_lock(class, hashtext(key)), class being the
// FNV-32a hash of the table's name), taken before the rows get their
// positions; on MySQL by locking the
// key's row in the table {table}_keys; SQLite has a single writer. A
// transaction that enqueues for a key therefore waits for any other open
// transaction that enqueued for the same key. A message queued behind an
// earlier one of its key (waiting or in flight) is
// parked out of the ready range and unparked when that one is delivered or
// dead-lettered, so deep per-key backlogs do not slow claims down: with
// 100,000 pending keyed messages over 1,000 keys a claim costs what it costs
// with 1,000. On PostgreSQL the write-back that finishes a message claims
// the next one of its key for the same relay instead (SettleAndClaim),
// when it may be published now: the claim rewrites the parked row in place,
// where making it claimable would write a new version with its index
// entries, and the relay publishes it without a claim of its own (for at
// most 16 messages of a key in a row: the key's next message is then made
// ready, behind those already ready, and the relay's claims take the
// oldest, so that no key waits behind the keys a busy relay holds). On
// PostgreSQL and MySQL the predecessor may be settled while the enqueuing
// transaction is still open (its settle cannot see the new row); a sweep
// that every store runs at most every 5 s from its claims, looking at 1,000
// keys at a time, unparks such a message.
// SQLite's single writer orders every enqueue before or after a settle and
// needs no sweep. On MySQL the enqueue learns whether a key has a pending
// message by a plain read in the caller's transaction (a locking read
// would make the relays' write-backs wait for it); a read older than the
// newest commits only leaves a message unparked, which the claim still
// holds back until it is its key's head. A message with a NotBefore is not
// parked on MySQL (it keeps NotBefore only in available_at), nor is a
// requeued one: the claim holds them back the same way, reading past them
// one by one while they wait.
//
// A requeued dead letter keeps its id and takes a new position at the tail
// of its key (under the same lock), so it never goes while a later message
// of its key is in flight.
//
// # Pauses
//
// A destination paused by a relay (outbox.Pause) is a row of the table
// {table}_pauses, with its end on the database's clock and the reason.
// Claims skip the destinations paused now, in the claim statement itself;
// Pauses lists them and Resume deletes them (and, on PostgreSQL, notifies
// the relays).
//
// # Wake-up
//
// On PostgreSQL Enqueue also sends a NOTIFY on the table's channel (named
// as the table; at commit; WithoutNotify turns it off), at most one every
// 10 ms from a store: the transactions that notify queue on a lock of the
// whole server as they commit, so that a NOTIFY in every transaction
// halved the throughput of 16 concurrent writers. pgxoutbox.NewListener
// returns an outbox.Notifier that LISTENs on a connection of its own and
// wakes its relay for each notification and twice more, 20 ms and 60 ms
// after the last one, for the transactions that committed just after a
// NOTIFY and sent none. Relays poll as well, so a message whose wake-up was
// lost (its notifying transaction rolled back, or it committed more than
// 50 ms after its Enqueue without another NOTIFY since) waits at most the
// poll interval. Measured on loopback with 16 writers committing bursts:
// the p99 from commit to publish is about 25 ms, the last message of a
// burst included (BenchmarkCommitToPublish). Behind a transaction-mode
// pooler, run the relay without a notifier (poll-only).
//
// # Time
//
// Every time a store compares (leases, schedules, retention) is the
// database's own clock, read in the statement: now() on PostgreSQL,
// NOW(6) on MySQL, unixepoch('subsec') on SQLite. Hosts whose clocks
// disagree still agree on leases.
//
// # Durability of write-backs
//
// On PostgreSQL the relay's claims and write-backs commit asynchronously by
// default (synchronous_commit off for those statements only): a database
// crash may forget the last of them, and the messages concerned are delivered
// again, which at-least-once delivery allows. WithDurableWriteBacks makes
// them synchronous. Enqueue is never affected.
//
// # MySQL and MariaDB
//
// MySQL 8 or MariaDB 10.6 or later (both have SKIP LOCKED). Times come from
// the server (UNIX_TIMESTAMP(NOW(6))); keep the session time zone free of
// daylight saving (UTC, as servers usually run), or leases may be off by the
// shift during the repeated hour. Keyed enqueues cost a second round trip
// (the key lock), and the {table}_keys table keeps one row per key ever used.
package sqloutbox
