-- steadfast idempotency store, PostgreSQL, migration 0001.
-- A template: {{"{{.Table}}"}} is the record table (WithTable, "schema.name" or
-- "name"), {{"{{.Name}}"}} its name without the
-- schema. Times are Unix microseconds on the database server's clock, written
-- by the store's statements (clock_timestamp()).

-- One row per idempotency key. status: 1 in progress, 2 completed.
-- expires_at: when the row may be forgotten (completed: end of retention;
-- in progress: end of lease plus the abandoned-claim retention).
CREATE TABLE IF NOT EXISTS {{.Table}} (
    idem_key    TEXT     NOT NULL PRIMARY KEY,
    fingerprint TEXT     NOT NULL,
    status      SMALLINT NOT NULL,
    token       BIGINT   NOT NULL,
    lease_until BIGINT   NOT NULL,
    expires_at  BIGINT   NOT NULL,
    response    BYTEA
);

CREATE INDEX IF NOT EXISTS {{.Name}}_expires_idx
    ON {{.Table}} (expires_at);

-- Inbox: one row per (consumer, message id) processed.
CREATE TABLE IF NOT EXISTS {{.Inbox}} (
    consumer     TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX IF NOT EXISTS {{.Name}}_inbox_processed_idx
    ON {{.Inbox}} (processed_at);

-- Ordering guard: the last position applied per entity, compared as
-- (position, tie_break), the tie-break byte-wise.
CREATE TABLE IF NOT EXISTS {{.Order}} (
    entity     TEXT   NOT NULL PRIMARY KEY,
    position   BIGINT NOT NULL,
    tie_break  TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS {{.Name}}_order_updated_idx
    ON {{.Order}} (updated_at);
