package sqlstore

// The statements of each dialect, in one place. "steadfast_idempotency" is
// replaced by the configured table name, as in the migrations. Times are Unix
// nanoseconds from the store's clock. A row is claimable when it has expired
// (expires_at <= now), or when it is in progress under an expired lease with
// the same fingerprint.

type queries struct {
	// claim takes or reports a key. Postgres: an insert returning
	// (acquired, fingerprint, status, token, lease_until, expires_at,
	// response), followed by takeover when the existing row is claimable.
	// SQLite: an upsert returning token when taken. MySQL: an upsert,
	// followed by lookupLocked.
	claim     string
	get       string
	lookup    string
	renew     string
	complete  string
	release   string
	check     string // is key held by token: returns one row if so
	force     string
	purge     string
	inbox     string
	inboxGC   string
	order     string
	orderUpd  string // MySQL only: advance the position
	orderLock string // MySQL only: read the locked position
	insert    string // MySQL only: the claim of a key that has no record
	// takeover is PostgreSQL's compare-and-swap of a claimable record.
	takeover string
	// lookupLocked is MySQL's read-back of the row its claim upsert
	// locked: a locking read sees the latest version under REPEATABLE READ.
	lookupLocked string
}

var postgresQueries = queries{
	// An existing key costs no write and no row lock: ON CONFLICT DO
	// NOTHING only waits for a transaction that is inserting the same key.
	claim: `WITH claimed AS (
    INSERT INTO steadfast_idempotency
        (idem_key, fingerprint, status, token, lease_until, expires_at, response)
    VALUES ($1, $2, 1, $3, $4, $5, NULL)
    ON CONFLICT (idem_key) DO NOTHING
    RETURNING true AS acquired, fingerprint, status, token, lease_until, expires_at, response
)
SELECT acquired, fingerprint, status, token, lease_until, expires_at, response FROM claimed
UNION ALL
SELECT false, fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency
    WHERE idem_key = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`,
	takeover: `UPDATE steadfast_idempotency
    SET fingerprint = $1, status = 1, token = $2, lease_until = $3, expires_at = $4, response = NULL
    WHERE idem_key = $5 AND token = $6
      AND (expires_at <= $7 OR (status = 1 AND lease_until <= $7 AND fingerprint = $1))`,
	get: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = $1 AND expires_at > $2`,
	lookup: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = $1`,
	renew: `UPDATE steadfast_idempotency SET lease_until = $1, expires_at = $2
    WHERE idem_key = $3 AND token = $4 AND status = 1 AND expires_at > $5`,
	complete: `UPDATE steadfast_idempotency
    SET status = 2, response = $1, expires_at = $2, lease_until = 0
    WHERE idem_key = $3 AND token = $4 AND status = 1 AND expires_at > $5`,
	release: `DELETE FROM steadfast_idempotency
    WHERE idem_key = $1 AND token = $2 AND status = 1`,
	check: `SELECT 1 FROM steadfast_idempotency
    WHERE idem_key = $1 AND token = $2 AND status = 1 AND expires_at > $3`,
	force: `DELETE FROM steadfast_idempotency WHERE idem_key = $1 AND status = 1`,
	purge: `DELETE FROM steadfast_idempotency WHERE idem_key IN (
    SELECT idem_key FROM steadfast_idempotency
    WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
    FOR UPDATE SKIP LOCKED)`,
	inbox: `INSERT INTO steadfast_idempotency_inbox (consumer, message_id, processed_at)
    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
	inboxGC: `DELETE FROM steadfast_idempotency_inbox WHERE (consumer, message_id) IN (
    SELECT consumer, message_id FROM steadfast_idempotency_inbox
    WHERE processed_at < $1 ORDER BY processed_at LIMIT $2
    FOR UPDATE SKIP LOCKED)`,
	order: `INSERT INTO steadfast_idempotency_order AS o (entity, position, tie_break, updated_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (entity) DO UPDATE
        SET position = EXCLUDED.position, tie_break = EXCLUDED.tie_break,
            updated_at = EXCLUDED.updated_at
        WHERE o.position < EXCLUDED.position
           OR (o.position = EXCLUDED.position AND o.tie_break < EXCLUDED.tie_break)`,
}

var sqliteQueries = queries{
	claim: `INSERT INTO steadfast_idempotency
    (idem_key, fingerprint, status, token, lease_until, expires_at, response)
VALUES (?1, ?2, 1, ?3, ?4, ?5, NULL)
ON CONFLICT (idem_key) DO UPDATE
    SET fingerprint = excluded.fingerprint, status = 1, token = excluded.token,
        lease_until = excluded.lease_until, expires_at = excluded.expires_at,
        response = NULL
    WHERE expires_at <= ?6
       OR (status = 1 AND lease_until <= ?6 AND fingerprint = excluded.fingerprint)
RETURNING token`,
	get: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = ?1 AND expires_at > ?2`,
	lookup: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = ?1`,
	renew: `UPDATE steadfast_idempotency SET lease_until = ?1, expires_at = ?2
    WHERE idem_key = ?3 AND token = ?4 AND status = 1 AND expires_at > ?5`,
	complete: `UPDATE steadfast_idempotency
    SET status = 2, response = ?1, expires_at = ?2, lease_until = 0
    WHERE idem_key = ?3 AND token = ?4 AND status = 1 AND expires_at > ?5`,
	release: `DELETE FROM steadfast_idempotency
    WHERE idem_key = ?1 AND token = ?2 AND status = 1`,
	check: `SELECT 1 FROM steadfast_idempotency
    WHERE idem_key = ?1 AND token = ?2 AND status = 1 AND expires_at > ?3`,
	force: `DELETE FROM steadfast_idempotency WHERE idem_key = ?1 AND status = 1`,
	purge: `DELETE FROM steadfast_idempotency WHERE rowid IN (
    SELECT rowid FROM steadfast_idempotency
    WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)`,
	inbox: `INSERT INTO steadfast_idempotency_inbox (consumer, message_id, processed_at)
    VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING`,
	inboxGC: `DELETE FROM steadfast_idempotency_inbox WHERE rowid IN (
    SELECT rowid FROM steadfast_idempotency_inbox
    WHERE processed_at < ?1 ORDER BY processed_at LIMIT ?2)`,
	order: `INSERT INTO steadfast_idempotency_order (entity, position, tie_break, updated_at)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (entity) DO UPDATE
    SET position = excluded.position, tie_break = excluded.tie_break,
        updated_at = excluded.updated_at
    WHERE position < excluded.position
       OR (position = excluded.position AND tie_break < excluded.tie_break)`,
}

// MySQL has no RETURNING with ON DUPLICATE KEY UPDATE. The claim upsert sets
// token first, under the claimable condition; every later assignment then
// tests token = VALUES(token), which holds only if this statement took the
// row (tokens are random 63-bit values). The caller reads the row back and
// compares tokens. MySQL evaluates the assignments left to right, which is
// what makes this work.
var mysqlQueries = queries{
	claim: `INSERT INTO steadfast_idempotency
    (idem_key, fingerprint, status, token, lease_until, expires_at, response)
VALUES (?, ?, 1, ?, ?, ?, NULL)
ON DUPLICATE KEY UPDATE
    token = IF(expires_at <= ?
               OR (status = 1 AND lease_until <= ? AND fingerprint = VALUES(fingerprint)),
               VALUES(token), token),
    fingerprint = IF(token = VALUES(token), VALUES(fingerprint), fingerprint),
    status      = IF(token = VALUES(token), 1, status),
    lease_until = IF(token = VALUES(token), VALUES(lease_until), lease_until),
    expires_at  = IF(token = VALUES(token), VALUES(expires_at), expires_at),
    response    = IF(token = VALUES(token), NULL, response)`,
	get: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = ? AND expires_at > ?`,
	lookup: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = ?`,
	lookupLocked: `SELECT fingerprint, status, token, lease_until, expires_at, response
    FROM steadfast_idempotency WHERE idem_key = ? FOR UPDATE`,
	renew: `UPDATE steadfast_idempotency SET lease_until = ?, expires_at = ?
    WHERE idem_key = ? AND token = ? AND status = 1 AND expires_at > ?`,
	complete: `UPDATE steadfast_idempotency
    SET status = 2, response = ?, expires_at = ?, lease_until = 0
    WHERE idem_key = ? AND token = ? AND status = 1 AND expires_at > ?`,
	release: `DELETE FROM steadfast_idempotency
    WHERE idem_key = ? AND token = ? AND status = 1`,
	check: `SELECT 1 FROM steadfast_idempotency
    WHERE idem_key = ? AND token = ? AND status = 1 AND expires_at > ?`,
	force: `DELETE FROM steadfast_idempotency WHERE idem_key = ? AND status = 1`,
	purge: `DELETE FROM steadfast_idempotency
    WHERE expires_at <= ? ORDER BY expires_at LIMIT ?`,
	inbox: `INSERT IGNORE INTO steadfast_idempotency_inbox (consumer, message_id, processed_at)
    VALUES (?, ?, ?)`,
	inboxGC: `DELETE FROM steadfast_idempotency_inbox
    WHERE processed_at < ? ORDER BY processed_at LIMIT ?`,
	// MySQL's ordering guard locks the entity's row before it reads it, so
	// that concurrent events for one entity queue on an exclusive lock
	// instead of deadlocking on a shared one: order makes sure the row
	// exists (a sentinel position below every real one, which only the
	// first event of an entity inserts) and locks it; orderLock reads it;
	// orderUpd advances it.
	order: `INSERT INTO steadfast_idempotency_order (entity, position, tie_break, updated_at)
    VALUES (?, -9223372036854775808, '', ?)
    ON DUPLICATE KEY UPDATE entity = entity`,
	orderLock: `SELECT position, tie_break FROM steadfast_idempotency_order
    WHERE entity = ? FOR UPDATE`,
	insert: `INSERT IGNORE INTO steadfast_idempotency
    (idem_key, fingerprint, status, token, lease_until, expires_at, response)
VALUES (?, ?, 1, ?, ?, ?, NULL)`,
	orderUpd: `UPDATE steadfast_idempotency_order
    SET position = ?, tie_break = ?, updated_at = ?
    WHERE entity = ? AND (position < ? OR (position = ? AND tie_break < ?))`,
}
