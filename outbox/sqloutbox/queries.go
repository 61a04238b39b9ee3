package sqloutbox

// The SQL of each dialect, in one place. Statements are templates: {t} is
// the table (schema-qualified when WithTable named a schema), {k} the MySQL
// key table beside it, {i} the stem of index names (the table's own name).
// Times are timestamptz on PostgreSQL and microseconds since the Unix epoch
// elsewhere, always the database's own clock; every query reads them back
// as microseconds. Kinds of outcome are backend.OutcomeKind's numbers.

// States stored in the state column.
const (
	statePending   = 0
	stateDelivered = 1
	stateDead      = 2
)

const pgSchema = `
CREATE TABLE IF NOT EXISTS {t} (
	seq           bigserial PRIMARY KEY,
	id            uuid NOT NULL UNIQUE,
	topic         text NOT NULL,
	destination   text NOT NULL,
	partition_key text,
	headers       text,
	payload       bytea NOT NULL,
	traceparent   text,
	not_before    timestamptz,
	created_at    timestamptz NOT NULL DEFAULT now(),
	available_at  timestamptz NOT NULL DEFAULT now(),
	state         smallint NOT NULL DEFAULT 0,
	attempts      integer NOT NULL DEFAULT 0,
	claims        integer NOT NULL DEFAULT 0,
	claim_token   bigint NOT NULL DEFAULT 0,
	last_error    text,
	done_at       timestamptz,
	leased_until  timestamptz NOT NULL DEFAULT '-infinity'
) WITH (fillfactor = {fillfactor});
-- Ready messages, in the order they become ready (a message queued behind
-- an earlier one of its key is parked at 'infinity' until that one is
-- done). Only pending rows: delivered rows cost nothing. A claimed message
-- stays where it is: its lease is leased_until, which no index holds, so
-- that a claim, a renewal or a release rewrites the row in place (a HOT
-- update: no index entry) in the room the fill factor keeps free in every
-- page; the token (0: none) and the lease have their size from the start,
-- so the row does not grow when claimed.
CREATE INDEX IF NOT EXISTS {i}_ready ON {t} (available_at) WHERE state = 0;
-- The head of each key: its pending messages that are not parked (only the
-- head is, unless a sweep has yet to unpark it), so that the index stays as
-- small as the number of keys, whatever the backlog behind them.
CREATE INDEX IF NOT EXISTS {i}_head ON {t} (partition_key, seq)
	WHERE state = 0 AND partition_key IS NOT NULL AND available_at <> 'infinity';
-- The parked messages of each key, next in line.
CREATE INDEX IF NOT EXISTS {i}_parked ON {t} (partition_key, seq) WHERE state = 0 AND available_at = 'infinity';
-- Cleanup of delivered rows, listing of dead letters.
CREATE INDEX IF NOT EXISTS {i}_done ON {t} (done_at) WHERE state = 1;
CREATE INDEX IF NOT EXISTS {i}_dead ON {t} (seq) WHERE state = 2;
-- Paused destinations: no relay claims their messages until paused_until.
CREATE TABLE IF NOT EXISTS {p} (
	destination  text PRIMARY KEY,
	paused_until timestamptz NOT NULL,
	reason       text NOT NULL,
	paused_at    timestamptz NOT NULL
);
`

const pgCols = `seq, id::text, topic, destination, partition_key, headers, payload, traceparent,
	(extract(epoch FROM created_at) * 1000000)::bigint,
	CASE WHEN available_at = 'infinity' THEN 9223372036854775807
		ELSE (extract(epoch FROM greatest(available_at, leased_until)) * 1000000)::bigint END,
	state, attempts, last_error,
	(extract(epoch FROM done_at) * 1000000)::bigint`

// pgClaim: the candidates are pending, ready, of a destination not paused
// (the paused ones are read once, into an array) nor excluded ({exclude},
// present only when the relay excludes some), and the head of their key (the lowest
// of its messages that are not parked: the messages behind a head are
// parked until it is done); SKIP LOCKED lets concurrent relays take
// disjoint sets. The claim writes the lease's end into leased_until, a
// column no index holds, so that the row is rewritten in place (see the
// schema); a claimed row stays in the ready range and claims pass over it
// until its lease expires, a cost bounded by the messages in flight. The
// UPDATE finds the rows by primary key through "seq = ANY (ARRAY(...))" and
// is not joined to c: joined to c alone, the planner hashes c and scans the
// whole table, delivered rows included; joined to c as well, the generic
// plan of the prepared statement (which estimates c at one row when most
// candidates are keyed) loops over c and probes the whole array for each
// row, so a claim of n rows costs n*n index probes.
//
// No filter may let the planner estimate that few rows qualify: the LIMIT
// would then be costed as a scan of the whole backlog, and above
// jit_above_cost PostgreSQL JIT-compiles the statement on every execution
// (about half a second of CPU). A bare "destination <> ALL (...)" did that
// whenever all messages went to one destination (its estimate is 1 - the
// frequency of the most common value); wrapped in COALESCE, a filter the
// planner cannot read, it is estimated at one half.
const pgClaim = `
WITH {async}c AS (
	SELECT seq FROM {t} o
	WHERE state = 0 AND available_at <= now() AND leased_until <= now(){exclude}
	  AND COALESCE(destination <> ALL (ARRAY(SELECT destination FROM {p} WHERE paused_until > now())), true)
	  AND (partition_key IS NULL OR o.seq = (
		SELECT min(p.seq) FROM {t} p
		WHERE p.partition_key = o.partition_key AND p.partition_key IS NOT NULL AND p.state = 0
		  AND p.available_at <> 'infinity'))
	ORDER BY available_at
	LIMIT $1
	FOR UPDATE OF o SKIP LOCKED
)
UPDATE {t} o SET claim_token = $2, leased_until = now() + make_interval(secs => $3), claims = o.claims + 1
{claimFrom}WHERE o.seq = ANY (ARRAY(SELECT seq FROM c))
RETURNING o.seq, o.id::text, o.topic, NULLIF(o.destination, o.topic), o.partition_key, o.headers, o.payload, o.traceparent,
	(extract(epoch FROM o.created_at) * 1000000)::bigint, o.attempts + 1, o.claims - 1 - o.attempts`

// pgClaimExclude is pgClaim's {exclude} when the relay excludes
// destinations ($4).
const pgClaimExclude = `
	  AND COALESCE(destination <> ALL ($4::text[]), true)`

// pgEnqueueOne enqueues one message without a key ($1 id, $2 topic, $3
// destination, $4 headers, $5 payload, $6 traceparent, $7 not before);
// pgEnqueueOneNotify also sends the NOTIFY ($8 the channel).
const (
	pgEnqueueOne = `INSERT INTO {t} (id, topic, destination, headers, payload, traceparent, not_before, available_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7::timestamptz, COALESCE($7::timestamptz, now()))`
	pgEnqueueOneNotify = `INSERT INTO {t} (id, topic, destination, headers, payload, traceparent, not_before, available_at)
SELECT $1::uuid, $2, $3, $4, $5, $6, $7::timestamptz, COALESCE($7::timestamptz, now())
FROM (SELECT pg_notify($8, '')) AS nt`
)

// pgAsync makes the relay's own statements commit asynchronously: a
// database crash may forget the last write-backs, which only means that
// those messages are claimed and delivered again. See WithDurableWriteBacks.
const pgAsync = `cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS x), `

// pgSettle applies a batch of outcomes in one statement and returns the
// positions it refused (rows whose first column is 0) and the messages it
// claimed (rows whose first column is 1, the other columns as a claim's).
// A delivered message is deleted (d), unless the store keeps delivered
// messages ({deleted} is then 0, which no kind is); the other outcomes
// update their row (s). attempts counts the outcomes of publishes
// (Delivered, Retry, Dead); claims counts the claims not given back
// (DeadUnsent, Release and Pause give theirs back), so claims - attempts is
// the number of claims abandoned without an outcome. Each of d and s finds
// its rows by primary key through "seq = ANY (ARRAY(...))" of its own
// positions (joined to unnest alone, the planner scans the whole table),
// and checks the token in its own WHERE, so that a row taken over since the
// statement's snapshot is refused. Release, Pause and Extend touch no
// indexed column (available_at stays): the row is rewritten in place.
//
// A keyed message that is done (f) makes the next one of its key, parked
// behind it, its key's head (nx, k, p). With a token ($6, not 0), the
// statement claims that message for the caller, leased for $7 seconds,
// unless it is not to be published now (its NotBefore is ahead, its
// destination is paused, it was abandoned before, another message of its
// key is in the way) or the outcome yields its key ($8, backend.Outcome.Yield,
// one per outcome): the claim changes no indexed column, so the row is
// rewritten in place, and the message is handed to the relay that held its
// predecessor; the others are unparked (available_at moves, a new version
// of the row with its index entries). A parked message is claimed only that
// way, so a Release or a Pause of one unparks it (it is its key's head).
// nx and k are MATERIALIZED: inlined, take's subqueries ran once for each
// column that depends on it.
const pgSettle = `
WITH {async}u AS (
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::float8[], $5::text[], $8::boolean[]) AS u(seq, tok, kind, delay, err, yield)
), d AS (
DELETE FROM {t} o USING u
WHERE o.seq = ANY (ARRAY(SELECT seq FROM u WHERE kind = {deleted}))
  AND o.seq = u.seq AND o.claim_token = u.tok AND o.state = 0
RETURNING o.seq, o.partition_key, u.yield
), s AS (
UPDATE {t} o SET
	state = CASE u.kind WHEN 1 THEN 1 WHEN 3 THEN 2 WHEN 4 THEN 2 ELSE 0 END,
	done_at = CASE WHEN u.kind IN (1, 3, 4) THEN now() END,
	available_at = CASE WHEN u.kind = 2 THEN now() + make_interval(secs => u.delay)
		WHEN u.kind IN (5, 6) AND o.available_at = 'infinity' THEN greatest(o.not_before, now())
		ELSE o.available_at END,
	leased_until = CASE WHEN u.kind = 7 THEN now() + make_interval(secs => u.delay) ELSE '-infinity' END,
	attempts = o.attempts + CASE WHEN u.kind IN (1, 2, 3) THEN 1 ELSE 0 END,
	claims = o.claims - CASE WHEN u.kind IN (4, 5, 6) THEN 1 ELSE 0 END,
	last_error = COALESCE(NULLIF(u.err, ''), o.last_error),
	claim_token = CASE WHEN u.kind = 7 THEN o.claim_token ELSE 0 END
FROM u
WHERE o.seq = ANY (ARRAY(SELECT seq FROM u WHERE kind <> {deleted}))
  AND o.seq = u.seq AND o.claim_token = u.tok AND o.state = 0
RETURNING o.seq, o.partition_key, o.state, o.destination, u.kind, u.delay, u.err, u.yield
), z AS (
INSERT INTO {p} AS z (destination, paused_until, reason, paused_at)
SELECT destination, now() + make_interval(secs => max(delay)), (array_agg(err ORDER BY delay DESC))[1], now()
FROM s WHERE kind = 6 GROUP BY destination
ON CONFLICT (destination) DO UPDATE SET paused_until = greatest(z.paused_until, excluded.paused_until),
	reason = CASE WHEN excluded.paused_until > z.paused_until THEN excluded.reason ELSE z.reason END,
	paused_at = CASE WHEN excluded.paused_until > z.paused_until THEN excluded.paused_at ELSE z.paused_at END
), f AS (
SELECT seq, partition_key, yield FROM d WHERE partition_key IS NOT NULL
UNION ALL
SELECT seq, partition_key, yield FROM s WHERE state <> 0 AND partition_key IS NOT NULL
), nx AS MATERIALIZED (
SELECT f.seq AS prev, f.partition_key AS key, f.yield, (SELECT min(q.seq) FROM {t} q
	WHERE q.partition_key = f.partition_key AND q.state = 0 AND q.available_at = 'infinity' AND q.seq > f.seq) AS seq
FROM f
), k AS MATERIALIZED (
SELECT nx.seq, $6::bigint <> 0 AND NOT nx.yield AND m.leased_until <= now() AND m.claims = m.attempts
	AND (m.not_before IS NULL OR m.not_before <= now())
	AND NOT EXISTS (SELECT 1 FROM {p} y WHERE y.destination = m.destination AND y.paused_until > now())
	AND NOT EXISTS (SELECT 1 FROM {t} e WHERE e.partition_key = nx.key AND e.state = 0
		AND e.available_at <> 'infinity' AND e.seq < nx.seq AND e.seq <> nx.prev) AS take
FROM nx JOIN {t} m ON m.seq = nx.seq
WHERE m.available_at = 'infinity' AND m.state = 0
), p AS (
UPDATE {t} n SET
	available_at = CASE WHEN k.take THEN n.available_at ELSE greatest(n.not_before, now()) END,
	claim_token = CASE WHEN k.take THEN $6 ELSE n.claim_token END,
	leased_until = CASE WHEN k.take THEN now() + make_interval(secs => $7) ELSE n.leased_until END,
	claims = n.claims + CASE WHEN k.take THEN 1 ELSE 0 END
FROM k
WHERE n.seq = k.seq AND n.available_at = 'infinity' AND n.state = 0
RETURNING k.take, n.seq, n.id::text AS id, n.topic, NULLIF(n.destination, n.topic) AS dest, n.partition_key AS key,
	n.headers, n.payload, n.traceparent AS tp, (extract(epoch FROM n.created_at) * 1000000)::bigint AS created,
	n.attempts + 1 AS attempt, n.claims - 1 - n.attempts AS aband
)
SELECT 0, r.seq, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bytea, NULL::text,
	NULL::bigint, NULL::bigint, NULL::bigint
FROM u r{asyncFrom}
WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.seq = r.seq) AND NOT EXISTS (SELECT 1 FROM s WHERE s.seq = r.seq)
UNION ALL
SELECT 1, seq, id, topic, dest, key, headers, payload, tp, created, attempt, aband FROM p WHERE take`

// pgUnpark makes ready the parked messages that are the head of their key
// (their predecessor was settled while they were being enqueued, so its
// settle could not see them), looking at up to $2 keys with parked messages
// after the key $1, through the index of parked messages (a skip scan, one
// probe per key): its cost is bounded whatever the backlog. It returns the
// last key it looked at, how many keys it looked at, and how many messages
// it made ready.
const pgUnpark = `
WITH RECURSIVE k(key) AS (
	(SELECT partition_key FROM {t} WHERE state = 0 AND available_at = 'infinity' AND partition_key > $1
	 ORDER BY partition_key LIMIT 1)
	UNION ALL
	SELECT (SELECT partition_key FROM {t} WHERE state = 0 AND available_at = 'infinity' AND partition_key > k.key
		ORDER BY partition_key LIMIT 1)
	FROM k WHERE k.key IS NOT NULL
), ks AS (
	SELECT key FROM k WHERE key IS NOT NULL LIMIT $2
), next AS (
	SELECT ks.key, (SELECT min(p.seq) FROM {t} p WHERE p.partition_key = ks.key AND p.state = 0 AND p.available_at = 'infinity') AS seq
	FROM ks
), u AS (
	UPDATE {t} o SET available_at = greatest(o.not_before, now())
	WHERE o.seq = ANY (ARRAY(SELECT n.seq FROM next n WHERE NOT EXISTS (
		SELECT 1 FROM {t} e WHERE e.partition_key = n.key AND e.state = 0 AND e.available_at <> 'infinity' AND e.seq < n.seq)))
	  AND o.available_at = 'infinity' AND o.state = 0
	RETURNING o.seq
)
SELECT (SELECT max(key) FROM ks), (SELECT count(*) FROM ks), (SELECT count(*) FROM u)`

// pgCleanup deletes delivered ($3 = 1) or dead ($3 = 2) messages done
// more than $1 seconds ago, at most $2, skipping rows another cleanup is
// deleting.
const pgCleanup = `
DELETE FROM {t} WHERE seq IN (
	SELECT seq FROM {t}
	WHERE state = $3 AND done_at <= now() - make_interval(secs => $1)
	LIMIT $2
	FOR UPDATE SKIP LOCKED)`

const pgStats = `
SELECT count(*) FILTER (WHERE state = 0),
	COALESCE((extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 0)) * 1000000)::bigint, 0),
	count(*) FILTER (WHERE state = 2)
FROM {t} WHERE state IN (0, 2)`

const pgPauses = `
SELECT destination, (extract(epoch FROM paused_until - now()) * 1000000)::bigint, reason
FROM {p} WHERE paused_until > now() ORDER BY destination`

const pgResume = `DELETE FROM {p} WHERE destination = ANY ($1::text[]) AND paused_until > now()`

const pgListDead = `SELECT ` + pgCols + ` FROM {t}
WHERE state = 2 AND seq > $1 AND ($2 = '' OR topic = $2) ORDER BY seq LIMIT $3`

const pgGet = `SELECT ` + pgCols + ` FROM {t} WHERE id = $1::uuid`

// pgRequeueLock takes the advisory locks of the keys of the dead letters
// to requeue, in key order, as Enqueue does: their new positions are then
// handed out in commit order among the key's writers.
const pgRequeueLock = `
SELECT count(pg_advisory_xact_lock($2, hashtext(k))) FROM (
	SELECT DISTINCT partition_key AS k FROM {t}
	WHERE id = ANY ($1::uuid[]) AND state = 2 AND partition_key IS NOT NULL ORDER BY 1) AS x`

// pgRequeue moves the named dead letters to the tail of their keys: each
// row is deleted and inserted again with the same id and a new position,
// pending, attempts reset, ready now, or parked behind a pending message of
// its key (or an earlier one of the same requeue).
const pgRequeue = `
WITH d AS (
	DELETE FROM {t} WHERE id = ANY ($1::uuid[]) AND state = 2
	RETURNING seq, id, topic, destination, partition_key, headers, payload, traceparent, not_before, created_at, last_error
)
INSERT INTO {t} (id, topic, destination, partition_key, headers, payload, traceparent, not_before, created_at, available_at, last_error)
SELECT id, topic, destination, partition_key, headers, payload, traceparent, not_before, created_at,
	CASE WHEN partition_key IS NOT NULL AND (
		row_number() OVER (PARTITION BY partition_key ORDER BY seq) > 1
		OR EXISTS (SELECT 1 FROM {t} e WHERE e.partition_key = d.partition_key AND e.state = 0 AND e.available_at <> 'infinity')
		OR EXISTS (SELECT 1 FROM {t} e WHERE e.partition_key = d.partition_key AND e.state = 0 AND e.available_at = 'infinity'))
	THEN 'infinity' ELSE greatest(not_before, now()) END,
	last_error
FROM d ORDER BY seq`

const pgDiscard = `DELETE FROM {t} WHERE id = ANY ($1::uuid[]) AND state = 2`

// SQLite: one writer at a time, so a single UPDATE ... RETURNING claims
// atomically. sqliteNow is the database's clock in microseconds.

const sqliteNow = `CAST(unixepoch('subsec') * 1000000 AS INTEGER)`

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS {t} (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	id            TEXT NOT NULL UNIQUE,
	topic         TEXT NOT NULL,
	destination   TEXT NOT NULL,
	partition_key TEXT,
	headers       TEXT,
	payload       BLOB NOT NULL,
	traceparent   TEXT,
	not_before    INTEGER,
	created_at    INTEGER NOT NULL,
	available_at  INTEGER NOT NULL,
	state         INTEGER NOT NULL DEFAULT 0,
	attempts      INTEGER NOT NULL DEFAULT 0,
	claims        INTEGER NOT NULL DEFAULT 0,
	claim_token   TEXT,
	last_error    TEXT,
	done_at       INTEGER,
	leased_until  INTEGER
);
CREATE INDEX IF NOT EXISTS {s}{i}_ready ON {n} (available_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS {s}{i}_key ON {n} (partition_key, seq) WHERE state = 0 AND partition_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS {s}{i}_done ON {n} (done_at) WHERE state = 1;
CREATE INDEX IF NOT EXISTS {s}{i}_dead ON {n} (seq) WHERE state = 2;
CREATE TABLE IF NOT EXISTS {p} (
	destination  TEXT PRIMARY KEY,
	paused_until INTEGER NOT NULL,
	reason       TEXT NOT NULL,
	paused_at    INTEGER NOT NULL
);
`

const plainCols = `seq, id, topic, destination, partition_key, headers, payload, traceparent,
	created_at, CASE WHEN leased_until > available_at THEN leased_until ELSE available_at END,
	state, attempts, last_error, done_at`

// sqliteClaim: ? token, ? lease (µs), ? limit; {x} is the exclusion of
// destinations. The lease is leased_until, which no index holds (see
// pgSchema).
const sqliteClaim = `
UPDATE {t} SET claim_token = ?, leased_until = ` + sqliteNow + ` + ?, claims = claims + 1
WHERE seq IN (
	SELECT seq FROM {t} o
	WHERE state = 0 AND available_at <= ` + sqliteNow + ` AND (leased_until IS NULL OR leased_until <= ` + sqliteNow + `) {x}
	  AND destination NOT IN (SELECT destination FROM {p} WHERE paused_until > ` + sqliteNow + `)
	  AND (partition_key IS NULL OR NOT EXISTS (
		SELECT 1 FROM {t} p
		WHERE p.partition_key = o.partition_key AND p.state = 0 AND p.seq < o.seq))
	ORDER BY available_at
	LIMIT ?)
RETURNING seq, id, topic, NULLIF(destination, topic), partition_key, headers, payload, traceparent, created_at, attempts + 1, claims - 1 - attempts`

const sqliteCleanup = `
DELETE FROM {t} WHERE seq IN (
	SELECT seq FROM {t} WHERE state = ? AND done_at <= ` + sqliteNow + ` - ? LIMIT ?)`

// parked is the available_at of a message waiting behind an earlier one of
// its key on SQLite and MySQL (PostgreSQL uses 'infinity').
const parked = "9223372036854775807"

// mysqlNextHeads reads, before a write-back marks the messages at the
// positions ? (a key's head each) delivered or dead, the next message of
// each of their keys: the first pending one after it in the key index (one
// index dive). It is a plain read, which waits on no lock: an UPDATE
// joined to the table would read it with locks, and wait on the caller's
// transactions that enqueue for the key.
const mysqlNextHeads = `
SELECT (SELECT q.seq FROM {t} q WHERE q.partition_key = d.partition_key AND q.state = 0 AND q.seq > d.seq ORDER BY q.seq LIMIT 1)
FROM {t} d WHERE d.seq IN ({done}) AND d.partition_key IS NOT NULL`

// mysqlUnparkSeqs makes ready the parked messages among positions that
// the caller appends (" AND seq IN (...)"): the next messages that
// mysqlNextHeads found, or the heads the sweep found. The primary key finds
// them: the ready index would read every parked message.
const mysqlUnparkSeqs = `UPDATE {t} FORCE INDEX (PRIMARY) SET available_at = ` + mysqlNow + ` WHERE available_at = ` + parked + ` AND state = 0`

// mysqlUnparkHeads is the unpark sweep's first statement: the lowest
// pending message of up to ? keys after the key ? (a loose scan of the key
// index: one probe a key). mysqlUnpark then makes ready those that are
// parked.
const mysqlUnparkHeads = `
SELECT partition_key, MIN(seq) FROM {t}
WHERE state = 0 AND partition_key > ?
GROUP BY partition_key ORDER BY partition_key LIMIT ?`

// genericUnpark makes ready the next message of the keys ({keys}) whose
// message was just delivered or dead-lettered.
const genericUnpark = `
UPDATE {t} SET available_at = CASE WHEN not_before IS NOT NULL AND not_before > {now} THEN not_before ELSE {now} END
WHERE available_at = ` + parked + ` AND seq IN (SELECT seq FROM (
	SELECT min(q.seq) AS seq FROM {t} q
	WHERE q.state = 0 AND q.partition_key IN ({keys})
	GROUP BY q.partition_key) AS x)`

// MySQL/MariaDB: no UPDATE ... RETURNING, so a claim is a READ COMMITTED
// transaction: read and lock with SKIP LOCKED, then write the lease. Per-key
// commit order is kept by a key table whose rows the enqueuing transaction
// locks.

const mysqlSchema = `
CREATE TABLE IF NOT EXISTS {t} (
	seq           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
	id            CHAR(36) NOT NULL,
	topic         VARCHAR(255) NOT NULL,
	destination   VARCHAR(255) NOT NULL,
	partition_key VARCHAR(255) NULL,
	headers       MEDIUMTEXT NULL,
	payload       LONGBLOB NOT NULL,
	traceparent   VARCHAR(128) NULL,
	created_at    BIGINT NOT NULL,
	available_at  BIGINT NOT NULL,
	state         TINYINT NOT NULL DEFAULT 0,
	attempts      INT NOT NULL DEFAULT 0,
	claims        INT NOT NULL DEFAULT 0,
	claim_token   CHAR(36) NULL,
	last_error    TEXT NULL,
	done_at       BIGINT NULL,
	leased_until  BIGINT NULL,
	UNIQUE KEY {i}_id (id),
	KEY {i}_ready (state, available_at),
	KEY {i}_key (partition_key, state, seq),
	KEY {i}_done (state, done_at)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS {k} (
	partition_key VARCHAR(255) NOT NULL PRIMARY KEY
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS {p} (
	destination  VARCHAR(255) NOT NULL PRIMARY KEY,
	paused_until BIGINT NOT NULL,
	reason       TEXT NOT NULL,
	paused_at    BIGINT NOT NULL
) ENGINE=InnoDB;
`

const mysqlNow = `CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)`

// mysqlClaimSelect reads the candidates as scanClaimed reads a claim's
// rows (attempts and abandoned claims as they will be once claimed) and
// locks them; the lease is then written into leased_until, which no index
// holds, so that the claim changes no index entry.
const mysqlClaimSelect = `
SELECT seq, id, topic, NULLIF(destination, topic), partition_key, headers, payload, traceparent, created_at, attempts + 1, claims - attempts
FROM {t} o
WHERE state = 0 AND available_at <= ` + mysqlNow + ` AND (leased_until IS NULL OR leased_until <= ` + mysqlNow + `) {x}
  AND destination NOT IN (SELECT destination FROM {p} WHERE paused_until > ` + mysqlNow + `)
  AND (partition_key IS NULL OR NOT EXISTS (
	SELECT 1 FROM {t} p
	WHERE p.partition_key = o.partition_key AND p.state = 0 AND p.seq < o.seq))
ORDER BY available_at
LIMIT ?
FOR UPDATE SKIP LOCKED`

const mysqlCleanupSelect = `
SELECT seq FROM {t} WHERE state = ? AND done_at <= ` + mysqlNow + ` - ?
LIMIT ? FOR UPDATE SKIP LOCKED`

// genericPauses and genericResume: {now} is the dialect's clock in
// microseconds.
const (
	genericPauses = `SELECT destination, paused_until - {now}, reason FROM {p} WHERE paused_until > {now} ORDER BY destination`
	genericResume = `DELETE FROM {p} WHERE paused_until > {now} AND destination IN ({dests})`
)

// genericStats: {now} is the dialect's clock in microseconds.
const genericStats = `
SELECT COALESCE(SUM(CASE WHEN state = 0 THEN 1 ELSE 0 END), 0),
	COALESCE({now} - MIN(CASE WHEN state = 0 THEN created_at END), 0),
	COALESCE(SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END), 0)
FROM {t} WHERE state IN (0, 2)`
