package sqlstore

import (
	"bytes"
	"fmt"
	"text/template"
)

// The statements of each dialect, in one place, as templates:
//
//	{{.Table}}  the record table (schema.name or name)
//	{{.Inbox}}  the inbox table ({{.Table}}_inbox)
//	{{.Order}}  the ordering table ({{.Table}}_order)
//	{{.Claim}}  PostgreSQL's claim function ({{.Table}}_claim)
//	{{.Now}}    the statement's time, in Unix microseconds, on the
//	            database server's clock
//	{{.Clock}}  PostgreSQL's {{.Now}} as a plain expression, read
//	            once per row of the subquery that selects it
//
// Every time the store writes or compares is the database's: times are
// Unix microseconds in BIGINT columns, computed in the statement from
// {{.Now}}; the store passes only durations (in microseconds). A row is
// claimable when it has expired (expires_at <= now), or when it is in
// progress under an expired lease with the same fingerprint.
//
// A statement that reads a record returns the columns (fingerprint, status,
// token, ttl, flag, response): ttl is what is left of the lease (in
// progress) or of the retention (completed), in microseconds, never
// negative; flag is whether the record is claimable (claim, lookup), or
// expired (MySQL's locked read-back), or false (get).
type queries struct {
	// claim takes or reports a key. Postgres: a read that inserts through
	// the claim function when there is no row, followed by takeover when
	// the existing row is claimable. SQLite: an upsert returning token when taken. MySQL: an
	// upsert, followed by lookupLocked.
	claim     string
	get       string
	lookup    string // the record as stored, expired or not; flag: claimable
	renew     string
	complete  string
	release   string
	check     string // MySQL only: is key held by token (one row if so)
	force     string
	purge     string
	inbox     string
	inboxGC   string
	guardGC   string
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

// names are what the templates fill in.
type names struct {
	Table, Inbox, Order string
	// Claim is PostgreSQL's claim function ({{.Table}}_claim).
	Claim string
	// Name is the record table's name without its schema, the stem of the
	// index names; Schema is "schema." or "".
	Name, Schema string
	Now          string
	// Clock is PostgreSQL's {{.Now}} as a plain expression, for a
	// one-row subquery that reads it once (see the claim); empty on the
	// other dialects.
	Clock string
}

// The statement's time of each dialect, in Unix microseconds.
const (
	// clock_timestamp() is the time of the statement (now() would be the
	// transaction's start); the scalar subquery is evaluated once per
	// statement, and lets an index serve a comparison with it. date_part
	// computes in float8, exact to the microsecond until the year 2255
	// (EXTRACT's numeric arithmetic costs the claim several microseconds
	// of the server's CPU).
	postgresNow = `(SELECT ` + postgresClock + `)`
	// postgresClock is the expression inside postgresNow.
	postgresClock = `(date_part('epoch', clock_timestamp()) * 1000000)::BIGINT`
	// 'now' is the same for every use within one statement. julianday has
	// millisecond precision.
	sqliteNow = `(CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)`
	// UTC_TIMESTAMP(6) is the statement's start; the difference from the
	// epoch involves no time zone.
	mysqlNow = `TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))`
)

// render fills in the templates of q.
func (q queries) render(n names) (queries, error) {
	var err error
	fill := func(text string) string {
		if text == "" || err != nil {
			return text
		}
		var t *template.Template
		if t, err = template.New("").Option("missingkey=error").Parse(text); err != nil {
			return ""
		}
		var b bytes.Buffer
		if err = t.Execute(&b, n); err != nil {
			return ""
		}
		return b.String()
	}
	r := queries{
		claim: fill(q.claim), get: fill(q.get), lookup: fill(q.lookup),
		renew: fill(q.renew), complete: fill(q.complete), release: fill(q.release),
		check: fill(q.check), force: fill(q.force), purge: fill(q.purge),
		inbox: fill(q.inbox), inboxGC: fill(q.inboxGC), guardGC: fill(q.guardGC), order: fill(q.order),
		orderUpd: fill(q.orderUpd), orderLock: fill(q.orderLock), insert: fill(q.insert),
		takeover: fill(q.takeover), lookupLocked: fill(q.lookupLocked),
	}
	if err != nil {
		return queries{}, fmt.Errorf("sqlstore: rendering the statements: %w", err)
	}
	return r, nil
}

var postgresQueries = queries{
	// One round trip either way, and a replay costs about a SELECT of the
	// row: the key's row is read, and only when there is none does the
	// claim function (migration 0002) insert one. Its ON CONFLICT DO
	// NOTHING covers a key inserted after the read's snapshot: it waits
	// for its transaction if that is still open, then returns NULL, and
	// the caller claims again. Returns (token, fingerprint, status, lease
	// left, retention left, response), the times left in microseconds at
	// the statement's time, negative once past: when the key has a row,
	// its columns; when it has none, the token inserted (NULL when the
	// caller must claim again) and NULLs. The caller derives the record's
	// TTL and whether the claim may take it over (see queries) from the
	// two times left, which costs the server less than computing them.
	// The statement's time is read once, by the one-row subquery t, which
	// is not pulled up (OFFSET 0; clock_timestamp() is volatile too): t.now
	// is a column of its row, not the scalar subquery {{.Now}} (an
	// initPlan), which cost a replay about 1.5µs more of the server's CPU.
	// Parameters: key, fingerprint, token, lease, abandoned retention.
	claim: `SELECT CASE WHEN r.idem_key IS NULL THEN {{.Claim}}($1, $2, $3, t.now + $4, t.now + $4 + $5) ELSE r.token END,
       r.fingerprint, r.status, r.lease_until - t.now, r.expires_at - t.now, r.response
    FROM (SELECT {{.Clock}} AS now OFFSET 0) t LEFT JOIN {{.Table}} r ON r.idem_key = $1`,
	// Parameters: fingerprint, token, lease, abandoned retention, key, the
	// token read.
	takeover: `UPDATE {{.Table}} AS r
    SET fingerprint = $1, status = 1, token = $2, lease_until = t.now + $3,
        expires_at = t.now + $3 + $4, response = NULL
    FROM (SELECT {{.Now}} AS now) t
    WHERE r.idem_key = $5 AND r.token = $6
      AND (r.expires_at <= t.now OR (r.status = 1 AND r.lease_until <= t.now AND r.fingerprint = $1))`,
	// The statement's time as in the claim.
	get: `SELECT r.fingerprint, r.status, r.token,
       CASE WHEN r.status = 1 THEN GREATEST(r.lease_until - t.now, 0) ELSE GREATEST(r.expires_at - t.now, 0) END,
       false, r.response
    FROM {{.Table}} r, (SELECT {{.Clock}} AS now OFFSET 0) t
    WHERE r.idem_key = $1 AND r.expires_at > t.now`,
	// Parameters: key, fingerprint.
	lookup: `SELECT r.fingerprint, r.status, r.token,
       CASE WHEN r.status = 1 THEN GREATEST(r.lease_until - t.now, 0) ELSE GREATEST(r.expires_at - t.now, 0) END,
       r.expires_at <= t.now OR (r.status = 1 AND r.lease_until <= t.now AND r.fingerprint = $2),
       r.response
    FROM {{.Table}} r, (SELECT {{.Now}} AS now) t
    WHERE r.idem_key = $1`,
	// Parameters: lease, abandoned retention, key, token.
	renew: `UPDATE {{.Table}} AS r SET lease_until = t.now + $1, expires_at = t.now + $1 + $2
    FROM (SELECT {{.Now}} AS now) t
    WHERE r.idem_key = $3 AND r.token = $4 AND r.status = 1 AND r.expires_at > t.now`,
	// Parameters: response, retention, key, token. No join with the
	// statement's time (an UPDATE ... FROM copies the joined row for
	// its recheck): each {{.Now}} is read once, the one in SET after the
	// one in WHERE.
	complete: `UPDATE {{.Table}}
    SET status = 2, response = $1, expires_at = {{.Now}} + $2, lease_until = 0
    WHERE idem_key = $3 AND token = $4 AND status = 1 AND expires_at > {{.Now}}`,
	release: `DELETE FROM {{.Table}}
    WHERE idem_key = $1 AND token = $2 AND status = 1`,
	force: `DELETE FROM {{.Table}} WHERE idem_key = $1 AND status = 1`,
	// Parameters: batch.
	purge: `DELETE FROM {{.Table}} WHERE idem_key IN (
    SELECT idem_key FROM {{.Table}}
    WHERE expires_at <= {{.Now}} ORDER BY expires_at LIMIT $1
    FOR UPDATE SKIP LOCKED)`,
	inbox: `INSERT INTO {{.Inbox}} (consumer, message_id, processed_at)
    VALUES ($1, $2, {{.Now}}) ON CONFLICT DO NOTHING`,
	// Parameters: age, batch.
	inboxGC: `DELETE FROM {{.Inbox}} WHERE (consumer, message_id) IN (
    SELECT consumer, message_id FROM {{.Inbox}}
    WHERE processed_at < {{.Now}} - $1 ORDER BY processed_at LIMIT $2
    FOR UPDATE SKIP LOCKED)`,
	// Parameters: age, batch.
	guardGC: `DELETE FROM {{.Order}} WHERE entity IN (
    SELECT entity FROM {{.Order}}
    WHERE updated_at < {{.Now}} - $1 ORDER BY updated_at LIMIT $2
    FOR UPDATE SKIP LOCKED)`,
	order: `INSERT INTO {{.Order}} AS o (entity, position, tie_break, updated_at)
    VALUES ($1, $2, $3, {{.Now}})
    ON CONFLICT (entity) DO UPDATE
        SET position = EXCLUDED.position, tie_break = EXCLUDED.tie_break,
            updated_at = EXCLUDED.updated_at
        WHERE o.position < EXCLUDED.position
           OR (o.position = EXCLUDED.position AND o.tie_break < EXCLUDED.tie_break)`,
}

var sqliteQueries = queries{
	// Parameters: key, fingerprint, token, lease, abandoned retention.
	claim: `INSERT INTO {{.Table}}
    (idem_key, fingerprint, status, token, lease_until, expires_at, response)
VALUES (?1, ?2, 1, ?3, {{.Now}} + ?4, {{.Now}} + ?4 + ?5, NULL)
ON CONFLICT (idem_key) DO UPDATE
    SET fingerprint = excluded.fingerprint, status = 1, token = excluded.token,
        lease_until = excluded.lease_until, expires_at = excluded.expires_at,
        response = NULL
    WHERE expires_at <= {{.Now}}
       OR (status = 1 AND lease_until <= {{.Now}} AND fingerprint = excluded.fingerprint)
RETURNING token`,
	get: `SELECT fingerprint, status, token,
       CASE WHEN status = 1 THEN MAX(lease_until - {{.Now}}, 0) ELSE MAX(expires_at - {{.Now}}, 0) END,
       0, response
    FROM {{.Table}} WHERE idem_key = ?1 AND expires_at > {{.Now}}`,
	lookup: `SELECT fingerprint, status, token,
       CASE WHEN status = 1 THEN MAX(lease_until - {{.Now}}, 0) ELSE MAX(expires_at - {{.Now}}, 0) END,
       expires_at <= {{.Now}} OR (status = 1 AND lease_until <= {{.Now}} AND fingerprint = ?2),
       response
    FROM {{.Table}} WHERE idem_key = ?1`,
	renew: `UPDATE {{.Table}} SET lease_until = {{.Now}} + ?1, expires_at = {{.Now}} + ?1 + ?2
    WHERE idem_key = ?3 AND token = ?4 AND status = 1 AND expires_at > {{.Now}}`,
	complete: `UPDATE {{.Table}}
    SET status = 2, response = ?1, expires_at = {{.Now}} + ?2, lease_until = 0
    WHERE idem_key = ?3 AND token = ?4 AND status = 1 AND expires_at > {{.Now}}`,
	release: `DELETE FROM {{.Table}}
    WHERE idem_key = ?1 AND token = ?2 AND status = 1`,
	force: `DELETE FROM {{.Table}} WHERE idem_key = ?1 AND status = 1`,
	purge: `DELETE FROM {{.Table}} WHERE rowid IN (
    SELECT rowid FROM {{.Table}}
    WHERE expires_at <= {{.Now}} ORDER BY expires_at LIMIT ?1)`,
	inbox: `INSERT INTO {{.Inbox}} (consumer, message_id, processed_at)
    VALUES (?1, ?2, {{.Now}}) ON CONFLICT DO NOTHING`,
	inboxGC: `DELETE FROM {{.Inbox}} WHERE rowid IN (
    SELECT rowid FROM {{.Inbox}}
    WHERE processed_at < {{.Now}} - ?1 ORDER BY processed_at LIMIT ?2)`,
	guardGC: `DELETE FROM {{.Order}} WHERE rowid IN (
    SELECT rowid FROM {{.Order}}
    WHERE updated_at < {{.Now}} - ?1 ORDER BY updated_at LIMIT ?2)`,
	order: `INSERT INTO {{.Order}} (entity, position, tie_break, updated_at)
VALUES (?1, ?2, ?3, {{.Now}})
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
	// Parameters: key, fingerprint, token, lease, lease, abandoned
	// retention.
	claim: `INSERT INTO {{.Table}}
    (idem_key, fingerprint, status, token, lease_until, expires_at, response)
VALUES (?, ?, 1, ?, {{.Now}} + ?, {{.Now}} + ? + ?, NULL)
ON DUPLICATE KEY UPDATE
    token = IF(expires_at <= {{.Now}}
               OR (status = 1 AND lease_until <= {{.Now}} AND fingerprint = VALUES(fingerprint)),
               VALUES(token), token),
    fingerprint = IF(token = VALUES(token), VALUES(fingerprint), fingerprint),
    status      = IF(token = VALUES(token), 1, status),
    lease_until = IF(token = VALUES(token), VALUES(lease_until), lease_until),
    expires_at  = IF(token = VALUES(token), VALUES(expires_at), expires_at),
    response    = IF(token = VALUES(token), NULL, response)`,
	get: `SELECT fingerprint, status, token,
       IF(status = 1, GREATEST(lease_until - {{.Now}}, 0), GREATEST(expires_at - {{.Now}}, 0)),
       0, response
    FROM {{.Table}} WHERE idem_key = ? AND expires_at > {{.Now}}`,
	// Parameters: fingerprint, key.
	lookup: `SELECT fingerprint, status, token,
       IF(status = 1, GREATEST(lease_until - {{.Now}}, 0), GREATEST(expires_at - {{.Now}}, 0)),
       expires_at <= {{.Now}} OR (status = 1 AND lease_until <= {{.Now}} AND fingerprint = ?),
       response
    FROM {{.Table}} WHERE idem_key = ?`,
	lookupLocked: `SELECT fingerprint, status, token,
       IF(status = 1, GREATEST(lease_until - {{.Now}}, 0), GREATEST(expires_at - {{.Now}}, 0)),
       expires_at <= {{.Now}}, response
    FROM {{.Table}} WHERE idem_key = ? FOR UPDATE`,
	// Parameters: lease, lease, abandoned retention, key, token.
	renew: `UPDATE {{.Table}} SET lease_until = {{.Now}} + ?, expires_at = {{.Now}} + ? + ?
    WHERE idem_key = ? AND token = ? AND status = 1 AND expires_at > {{.Now}}`,
	complete: `UPDATE {{.Table}}
    SET status = 2, response = ?, expires_at = {{.Now}} + ?, lease_until = 0
    WHERE idem_key = ? AND token = ? AND status = 1 AND expires_at > {{.Now}}`,
	release: `DELETE FROM {{.Table}}
    WHERE idem_key = ? AND token = ? AND status = 1`,
	check: `SELECT 1 FROM {{.Table}}
    WHERE idem_key = ? AND token = ? AND status = 1 AND expires_at > {{.Now}}`,
	force: `DELETE FROM {{.Table}} WHERE idem_key = ? AND status = 1`,
	purge: `DELETE FROM {{.Table}}
    WHERE expires_at <= {{.Now}} ORDER BY expires_at LIMIT ?`,
	inbox: `INSERT IGNORE INTO {{.Inbox}} (consumer, message_id, processed_at)
    VALUES (?, ?, {{.Now}})`,
	inboxGC: `DELETE FROM {{.Inbox}}
    WHERE processed_at < {{.Now}} - ? ORDER BY processed_at LIMIT ?`,
	guardGC: `DELETE FROM {{.Order}}
    WHERE updated_at < {{.Now}} - ? ORDER BY updated_at LIMIT ?`,
	// MySQL's ordering guard locks the entity's row before it reads it, so
	// that concurrent events for one entity queue on an exclusive lock
	// instead of deadlocking on a shared one: order makes sure the row
	// exists (a sentinel position below every real one, which only the
	// first event of an entity inserts) and locks it; orderLock reads it;
	// orderUpd advances it.
	order: `INSERT INTO {{.Order}} (entity, position, tie_break, updated_at)
    VALUES (?, -9223372036854775808, '', {{.Now}})
    ON DUPLICATE KEY UPDATE entity = entity`,
	orderLock: `SELECT position, tie_break FROM {{.Order}}
    WHERE entity = ? FOR UPDATE`,
	// Parameters: key, fingerprint, token, lease, lease, abandoned
	// retention.
	insert: `INSERT IGNORE INTO {{.Table}}
    (idem_key, fingerprint, status, token, lease_until, expires_at, response)
VALUES (?, ?, 1, ?, {{.Now}} + ?, {{.Now}} + ? + ?, NULL)`,
	orderUpd: `UPDATE {{.Order}}
    SET position = ?, tie_break = ?, updated_at = {{.Now}}
    WHERE entity = ? AND (position < ? OR (position = ? AND tie_break < ?))`,
}
