-- steadfast idempotency store, MySQL 8 / MariaDB 10.5+, migration 0001.
-- A template: {{"{{.Table}}"}} is the record table (WithTable, "database.name" or
-- "name"), {{"{{.Name}}"}} its name without the
-- database. Times are Unix microseconds on the database server's clock,
-- written by the store's statements (UTC_TIMESTAMP(6)).
-- Keys are VARBINARY so that they compare byte for byte (a VARCHAR with the
-- default collation would make "abc" and "ABC" the same key).

-- One row per idempotency key. status: 1 in progress, 2 completed.
-- expires_at: when the row may be forgotten (completed: end of retention;
-- in progress: end of lease plus the abandoned-claim retention).
CREATE TABLE IF NOT EXISTS {{.Table}} (
    idem_key    VARBINARY(1024) NOT NULL PRIMARY KEY,
    fingerprint VARBINARY(255)  NOT NULL,
    status      SMALLINT        NOT NULL,
    token       BIGINT          NOT NULL,
    lease_until BIGINT          NOT NULL,
    expires_at  BIGINT          NOT NULL,
    response    LONGBLOB,
    INDEX {{.Name}}_expires_idx (expires_at)
) ENGINE = InnoDB;

-- Inbox: one row per (consumer, message id) processed.
CREATE TABLE IF NOT EXISTS {{.Inbox}} (
    consumer     VARBINARY(255)  NOT NULL,
    message_id   VARBINARY(1024) NOT NULL,
    processed_at BIGINT          NOT NULL,
    PRIMARY KEY (consumer, message_id),
    INDEX {{.Name}}_inbox_processed_idx (processed_at)
) ENGINE = InnoDB;

-- Ordering guard: the last position applied per entity, compared as
-- (position, tie_break), the tie-break byte-wise.
CREATE TABLE IF NOT EXISTS {{.Order}} (
    entity     VARBINARY(1024) NOT NULL PRIMARY KEY,
    position   BIGINT          NOT NULL,
    tie_break  VARBINARY(255)  NOT NULL,
    updated_at BIGINT          NOT NULL,
    INDEX {{.Name}}_order_updated_idx (updated_at)
) ENGINE = InnoDB;
