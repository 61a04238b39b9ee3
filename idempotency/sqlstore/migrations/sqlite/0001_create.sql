-- steadfast idempotency store, SQLite, migration 0001.
-- A template: {{"{{.Table}}"}} is the record table (WithTable, "schema.name" or
-- "name"), {{"{{.Name}}"}} its name without the
-- schema, {{"{{.Schema}}"}} "schema." or nothing. Times are Unix microseconds on
-- the database's clock, written by the store's statements (julianday('now')).

-- One row per idempotency key. status: 1 in progress, 2 completed.
-- expires_at: when the row may be forgotten (completed: end of retention;
-- in progress: end of lease plus the abandoned-claim retention).
CREATE TABLE IF NOT EXISTS {{.Table}} (
    idem_key    TEXT    NOT NULL PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    token       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    response    BLOB
);

CREATE INDEX IF NOT EXISTS {{.Schema}}{{.Name}}_expires_idx
    ON {{.Name}} (expires_at);

-- Inbox: one row per (consumer, message id) processed.
CREATE TABLE IF NOT EXISTS {{.Inbox}} (
    consumer     TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX IF NOT EXISTS {{.Schema}}{{.Name}}_inbox_processed_idx
    ON {{.Name}}_inbox (processed_at);

-- Ordering guard: the last position applied per entity, compared as
-- (position, tie_break), the tie-break byte-wise.
CREATE TABLE IF NOT EXISTS {{.Order}} (
    entity     TEXT    NOT NULL PRIMARY KEY,
    position   INTEGER NOT NULL,
    tie_break  TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS {{.Name}}_order_updated_idx
    ON {{.Order}} (updated_at);
