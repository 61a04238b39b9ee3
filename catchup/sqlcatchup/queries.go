package sqlcatchup

// The statements of every dialect, in one place. {t} is the table's name,
// {i} the same without a schema prefix (for index names), {now} the
// database's clock in Unix microseconds. Placeholders are written "?" and
// numbered for PostgreSQL when the store is made.
//
// {t} holds one row per source: its cursor, its lease (owner and end, on
// the database's clock), when the cursor was last stored and the creation
// time of the newest event read (for the lag). {t}_failed holds the events
// whose handler failed: state 0 failing (counting attempts), 1 dead letter,
// 2 dead letter requeued by an operator (the poller applies it at its next
// pass), 3 dead letter refused for good (never requeued). {skip} is
// catchup.Now.

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
    updated_at  bigint NOT NULL DEFAULT 0,
    newest      bigint NOT NULL DEFAULT 0
);
-- Events whose handler failed: 0 failing, 1 dead letter, 2 requeued,
-- 3 refused.
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

const sqliteSchema = `-- steadfast catchup: the cursor and lease of each source (steadfast.SQLite).
CREATE TABLE IF NOT EXISTS {t} (
    source      TEXT    PRIMARY KEY,
    list_cursor TEXT    NOT NULL DEFAULT '',
    owner       TEXT    NOT NULL DEFAULT '',
    lease_until INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL DEFAULT 0,
    newest      INTEGER NOT NULL DEFAULT 0
);
-- Events whose handler failed: 0 failing, 1 dead letter, 2 requeued,
-- 3 refused.
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

// MySQL: ids are VARBINARY so that they compare byte for byte; text is
// utf8mb4 whatever the server's default.
const mysqlSchema = `-- steadfast catchup: the cursor and lease of each source (MySQL/MariaDB).
CREATE TABLE IF NOT EXISTS {t} (
    source      VARBINARY(255) NOT NULL PRIMARY KEY,
    list_cursor TEXT           NOT NULL,
    owner       VARCHAR(64)    NOT NULL DEFAULT '',
    lease_until BIGINT         NOT NULL DEFAULT 0,
    updated_at  BIGINT         NOT NULL DEFAULT 0,
    newest      BIGINT         NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
-- Events whose handler failed: 0 failing, 1 dead letter, 2 requeued,
-- 3 refused.
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
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
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
	qAdvance     = `UPDATE {t} SET list_cursor = ?, newest = CASE WHEN ? > newest THEN ? ELSE newest END,
lease_until = {now} + ?, updated_at = {now}
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
	// refuse buries an event refused for good (a record of failed attempts
	// of the same id becomes it); burying it again changes nothing, so a
	// row is affected only for a new dead letter.
	qRefuse = `INSERT INTO {t}_failed (source, event_id, state, attempts, last_error, event_type, created, payload, list_cursor, updated_at)
VALUES (?, ?, 3, 0, ?, ?, ?, ?, ?, {now})
ON CONFLICT (source, event_id) DO UPDATE SET state = 3, last_error = excluded.last_error, updated_at = excluded.updated_at
WHERE {t}_failed.state = 0`
	qRefuseMySQL = `INSERT INTO {t}_failed (source, event_id, state, attempts, last_error, event_type, created, payload, list_cursor, updated_at)
VALUES (?, ?, 3, 0, ?, ?, ?, ?, ?, {now})
ON DUPLICATE KEY UPDATE last_error = IF(state = 0, VALUES(last_error), last_error),
updated_at = IF(state = 0, VALUES(updated_at), updated_at), state = IF(state = 0, 3, state)`
	qFailing  = `SELECT event_id FROM {t}_failed WHERE state = 0 AND source = ? ORDER BY seq LIMIT ?`
	qRequeued = `SELECT event_id, event_type, created, payload, list_cursor FROM {t}_failed
WHERE state = 2 AND source = ? ORDER BY seq LIMIT ?`
	qResolve  = `DELETE FROM {t}_failed WHERE source = ? AND event_id = ? AND state IN (0, 2)`
	qListDead = `SELECT seq, source, event_id, event_type, created, payload, list_cursor, state, attempts, last_error, updated_at
FROM {t}_failed WHERE state IN (1, 2, 3) AND seq > ? AND (? = '' OR source = ?) ORDER BY seq LIMIT ?`
	qRequeue = `UPDATE {t}_failed SET state = 2, attempts = 0, updated_at = {now} WHERE state = 1 AND source = ? AND event_id IN ({ids})`
	qDiscard = `DELETE FROM {t}_failed WHERE state IN (1, 2, 3) AND source = ? AND event_id IN ({ids})`

	// cursors reads every source's row with figures on one reading of the
	// database's clock.
	qCursors = `SELECT c.source, c.list_cursor,
    CASE WHEN c.lease_until > n.clock THEN c.owner ELSE '' END,
    CASE WHEN c.lease_until > n.clock THEN c.lease_until - n.clock ELSE 0 END,
    CASE WHEN c.updated_at > 0 AND n.clock > c.updated_at THEN n.clock - c.updated_at ELSE 0 END,
    CASE WHEN c.newest > 0 AND n.clock > c.newest THEN n.clock - c.newest ELSE 0 END,
    (SELECT COUNT(*) FROM {t}_failed f WHERE f.state = 0 AND f.source = c.source),
    (SELECT COUNT(*) FROM {t}_failed f WHERE f.state IN (1, 2, 3) AND f.source = c.source)
FROM {t} c CROSS JOIN (SELECT {now} AS clock) n ORDER BY c.source`
	// setCursor stores an operator's cursor and ends the lease: a poller
	// applying a page then fails to advance (its page is rolled back) and
	// takes the lease again at the new cursor.
	qSetCursor = `INSERT INTO {t} (source, list_cursor, owner, lease_until, updated_at, newest) VALUES (?, ?, '', 0, {now}, 0)
ON CONFLICT (source) DO UPDATE SET list_cursor = excluded.list_cursor, owner = '', lease_until = 0, updated_at = excluded.updated_at, newest = 0`
	qSetCursorMySQL = `INSERT INTO {t} (source, list_cursor, owner, lease_until, updated_at, newest) VALUES (?, ?, '', 0, {now}, 0)
ON DUPLICATE KEY UPDATE list_cursor = VALUES(list_cursor), owner = '', lease_until = 0, updated_at = VALUES(updated_at), newest = 0`
	// skipToEnd stores catchup.Now before the current cursor (unless a skip
	// is pending already), the poller reading from there.
	qSkipToEnd = `INSERT INTO {t} (source, list_cursor, owner, lease_until, updated_at, newest) VALUES (?, '{skip}:', '', 0, {now}, 0)
ON CONFLICT (source) DO UPDATE SET list_cursor = CASE
    WHEN {t}.list_cursor = '{skip}' OR {t}.list_cursor LIKE '{skip}:%' THEN {t}.list_cursor
    ELSE '{skip}:' || {t}.list_cursor END,
owner = '', lease_until = 0, updated_at = excluded.updated_at, newest = 0`
	qSkipToEndMySQL = `INSERT INTO {t} (source, list_cursor, owner, lease_until, updated_at, newest) VALUES (?, '{skip}:', '', 0, {now}, 0)
ON DUPLICATE KEY UPDATE list_cursor = CASE
    WHEN list_cursor = '{skip}' OR list_cursor LIKE '{skip}:%' THEN list_cursor
    ELSE CONCAT('{skip}:', list_cursor) END,
owner = '', lease_until = 0, updated_at = VALUES(updated_at), newest = 0`
	// purgeFailing deletes records of failed attempts not updated for a
	// while (an event applied without this store hearing of it, or no
	// longer listed), never a dead letter.
	qPurgeFailing = `DELETE FROM {t}_failed WHERE seq IN (
    SELECT seq FROM {t}_failed WHERE state = 0 AND updated_at <= {now} - ? ORDER BY seq LIMIT ?{lock})`
	qPurgeFailingMySQL = `DELETE FROM {t}_failed WHERE state = 0 AND updated_at <= {now} - ? ORDER BY seq LIMIT ?`
)
