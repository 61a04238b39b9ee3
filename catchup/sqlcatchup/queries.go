package sqlcatchup

// The statements of every dialect, in one place. {t} is the table's name,
// {i} the same without a schema prefix (for index names), {now} the
// database's clock in Unix microseconds. Placeholders are written "?" and
// numbered for PostgreSQL when the store is made.
//
// {t} holds one row per source: its cursor and its lease (owner and end, on
// the database's clock). {t}_failed holds the events whose handler failed:
// state 0 failing (counting attempts), 1 dead letter, 2 dead letter requeued
// by an operator (the poller applies it at its next pass).

const (
	pgNow     = `(extract(epoch from clock_timestamp()) * 1000000)::bigint`
	sqliteNow = `CAST(unixepoch('subsec') * 1000000 AS INTEGER)`
	mysqlNow  = `CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)`
)

const pgSchema = `-- steadfast catchup: the cursor and lease of each source (PostgreSQL).
CREATE TABLE IF NOT EXISTS {t} (
    source      text   PRIMARY KEY,
    list_cursor text   NOT NULL DEFAULT '',
    owner       text   NOT NULL DEFAULT '',
    lease_until bigint NOT NULL DEFAULT 0,
    updated_at  bigint NOT NULL DEFAULT 0
);
-- Events whose handler failed: 0 failing, 1 dead letter, 2 requeued.
CREATE TABLE IF NOT EXISTS {t}_failed (
    seq         bigserial PRIMARY KEY,
    source      text     NOT NULL,
    event_id    text     NOT NULL,
    state       smallint NOT NULL DEFAULT 0,
    attempts    integer  NOT NULL DEFAULT 0,
    last_error  text     NOT NULL DEFAULT '',
    event_type  text     NOT NULL DEFAULT '',
    created     bigint   NOT NULL DEFAULT 0,
    payload     bytea    NOT NULL,
    list_cursor text     NOT NULL DEFAULT '',
    updated_at  bigint   NOT NULL DEFAULT 0,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS {i}_failed_state ON {t}_failed (state, source, seq);
`

const sqliteSchema = `-- steadfast catchup: the cursor and lease of each source (SQLite).
CREATE TABLE IF NOT EXISTS {t} (
    source      TEXT    PRIMARY KEY,
    list_cursor TEXT    NOT NULL DEFAULT '',
    owner       TEXT    NOT NULL DEFAULT '',
    lease_until INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL DEFAULT 0
);
-- Events whose handler failed: 0 failing, 1 dead letter, 2 requeued.
CREATE TABLE IF NOT EXISTS {t}_failed (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT    NOT NULL DEFAULT '',
    event_type  TEXT    NOT NULL DEFAULT '',
    created     INTEGER NOT NULL DEFAULT 0,
    payload     BLOB    NOT NULL,
    list_cursor TEXT    NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS {i}_failed_state ON {t}_failed (state, source, seq);
`

// MySQL: ids are VARBINARY so that they compare byte for byte.
const mysqlSchema = `-- steadfast catchup: the cursor and lease of each source (MySQL/MariaDB).
CREATE TABLE IF NOT EXISTS {t} (
    source      VARBINARY(255) NOT NULL PRIMARY KEY,
    list_cursor TEXT           NOT NULL,
    owner       VARCHAR(64)    NOT NULL DEFAULT '',
    lease_until BIGINT         NOT NULL DEFAULT 0,
    updated_at  BIGINT         NOT NULL DEFAULT 0
) ENGINE = InnoDB;
-- Events whose handler failed: 0 failing, 1 dead letter, 2 requeued.
CREATE TABLE IF NOT EXISTS {t}_failed (
    seq         BIGINT          NOT NULL AUTO_INCREMENT PRIMARY KEY,
    source      VARBINARY(255)  NOT NULL,
    event_id    VARBINARY(1024) NOT NULL,
    state       SMALLINT        NOT NULL DEFAULT 0,
    attempts    INT             NOT NULL DEFAULT 0,
    last_error  TEXT            NOT NULL,
    event_type  VARCHAR(255)    NOT NULL DEFAULT '',
    created     BIGINT          NOT NULL DEFAULT 0,
    payload     LONGBLOB        NOT NULL,
    list_cursor TEXT            NOT NULL,
    updated_at  BIGINT          NOT NULL DEFAULT 0,
    UNIQUE KEY {i}_failed_event (source, event_id),
    KEY {i}_failed_state (state, source, seq)
) ENGINE = InnoDB;
`

const (
	// take renews owner's lease, or takes one that ran out.
	qTake = `UPDATE {t} SET owner = ?, lease_until = {now} + ?
WHERE source = ? AND (owner = ? OR lease_until <= {now})`
	// create makes the source's row, leased to owner, if it is missing.
	qCreate      = `INSERT INTO {t} (source, list_cursor, owner, lease_until, updated_at) VALUES (?, '', ?, {now} + ?, {now}) ON CONFLICT DO NOTHING`
	qCreateMySQL = `INSERT IGNORE INTO {t} (source, list_cursor, owner, lease_until, updated_at) VALUES (?, '', ?, {now} + ?, {now})`
	qCursor      = `SELECT list_cursor FROM {t} WHERE source = ?`
	qRelease     = `UPDATE {t} SET owner = '', lease_until = 0 WHERE source = ? AND owner = ?`
	qAdvance     = `UPDATE {t} SET list_cursor = ?, lease_until = {now} + ?, updated_at = {now}
WHERE source = ? AND owner = ? AND lease_until > {now}`
	qFail = `INSERT INTO {t}_failed (source, event_id, state, attempts, last_error, event_type, created, payload, list_cursor, updated_at)
VALUES (?, ?, 0, 1, ?, ?, ?, ?, ?, {now})
ON CONFLICT (source, event_id) DO UPDATE SET attempts = {t}_failed.attempts + 1, last_error = excluded.last_error, updated_at = excluded.updated_at
RETURNING attempts`
	qFailMySQL = `INSERT INTO {t}_failed (source, event_id, state, attempts, last_error, event_type, created, payload, list_cursor, updated_at)
VALUES (?, ?, 0, 1, ?, ?, ?, ?, ?, {now})
ON DUPLICATE KEY UPDATE attempts = attempts + 1, last_error = VALUES(last_error), updated_at = VALUES(updated_at)`
	qAttempts = `SELECT attempts FROM {t}_failed WHERE source = ? AND event_id = ?`
	qBury     = `INSERT INTO {t}_failed (source, event_id, state, attempts, last_error, event_type, created, payload, list_cursor, updated_at)
VALUES (?, ?, 1, 0, ?, ?, ?, ?, ?, {now})
ON CONFLICT (source, event_id) DO UPDATE SET state = 1, last_error = excluded.last_error, updated_at = excluded.updated_at`
	qBuryMySQL = `INSERT INTO {t}_failed (source, event_id, state, attempts, last_error, event_type, created, payload, list_cursor, updated_at)
VALUES (?, ?, 1, 0, ?, ?, ?, ?, ?, {now})
ON DUPLICATE KEY UPDATE state = 1, last_error = VALUES(last_error), updated_at = VALUES(updated_at)`
	qRequeued = `SELECT event_id, event_type, created, payload, list_cursor FROM {t}_failed
WHERE state = 2 AND source = ? ORDER BY seq LIMIT ?`
	qResolve  = `DELETE FROM {t}_failed WHERE source = ? AND event_id = ? AND state IN (0, 2)`
	qListDead = `SELECT seq, source, event_id, event_type, created, payload, list_cursor, state, attempts, last_error, updated_at
FROM {t}_failed WHERE state IN (1, 2) AND seq > ? AND (? = '' OR source = ?) ORDER BY seq LIMIT ?`
	qRequeue = `UPDATE {t}_failed SET state = 2, attempts = 0, updated_at = {now} WHERE state = 1 AND source = ? AND event_id IN ({ids})`
	qDiscard = `DELETE FROM {t}_failed WHERE state IN (1, 2) AND source = ? AND event_id IN ({ids})`
)
