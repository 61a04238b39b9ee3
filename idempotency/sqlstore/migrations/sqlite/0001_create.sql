-- steadfast idempotency store, SQLite, migration 0001.
-- Times are Unix nanoseconds written by the application's clock (see the
-- package documentation). The table name is configurable: every occurrence of
-- "steadfast_idempotency" below is replaced by the name given to the store.

-- One row per idempotency key. status: 1 in progress, 2 completed.
-- expires_at: when the row may be forgotten (completed: end of retention;
-- in progress: end of lease plus the abandoned-claim retention).
CREATE TABLE IF NOT EXISTS steadfast_idempotency (
    idem_key    TEXT    NOT NULL PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    token       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    response    BLOB
);

CREATE INDEX IF NOT EXISTS steadfast_idempotency_expires_idx
    ON steadfast_idempotency (expires_at);

-- Inbox: one row per (consumer, message id) processed.
CREATE TABLE IF NOT EXISTS steadfast_idempotency_inbox (
    consumer     TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX IF NOT EXISTS steadfast_idempotency_inbox_processed_idx
    ON steadfast_idempotency_inbox (processed_at);

-- Ordering guard: the last position applied per entity, compared as
-- (position, tie_break), the tie-break byte-wise.
CREATE TABLE IF NOT EXISTS steadfast_idempotency_order (
    entity     TEXT    NOT NULL PRIMARY KEY,
    position   INTEGER NOT NULL,
    tie_break  TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
