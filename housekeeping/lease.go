package housekeeping

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

// The lease table holds one row per lease: who sweeps (owner) and until
// when (lease_until, Unix microseconds on the database's clock). While a
// pass runs, lease_until is renewed after every batch; when the pass ends it
// is set to the time of the next pass, so that one replica sweeps per
// interval. swept_at and removed describe the last pass, for operators.
// Every statement is one statement in autocommit: no session state, no
// advisory lock, nothing a transaction pooler could break.

// leaseName is the row of a Sweeper in its table.
const leaseName = "sweeper"

// The database's clock, in Unix microseconds (the same expressions as the
// idempotency store's).
const (
	postgresNow = `(SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT)`
	sqliteNow   = `(CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000)`
	mysqlNow    = `TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))`
)

const schemaPostgres = `-- steadfast housekeeping: the lease of the replica that sweeps (PostgreSQL).
CREATE TABLE IF NOT EXISTS {t} (
    lease_name  TEXT   NOT NULL PRIMARY KEY,
    owner       TEXT   NOT NULL DEFAULT '',
    lease_until BIGINT NOT NULL DEFAULT 0,
    generation  BIGINT NOT NULL DEFAULT 0,
    swept_at    BIGINT NOT NULL DEFAULT 0,
    removed     BIGINT NOT NULL DEFAULT 0
);
`

const schemaSQLite = `-- steadfast housekeeping: the lease of the replica that sweeps (SQLite).
CREATE TABLE IF NOT EXISTS {t} (
    lease_name  TEXT    NOT NULL PRIMARY KEY,
    owner       TEXT    NOT NULL DEFAULT '',
    lease_until INTEGER NOT NULL DEFAULT 0,
    generation  INTEGER NOT NULL DEFAULT 0,
    swept_at    INTEGER NOT NULL DEFAULT 0,
    removed     INTEGER NOT NULL DEFAULT 0
);
`

const schemaMySQL = `-- steadfast housekeeping: the lease of the replica that sweeps (MySQL/MariaDB).
CREATE TABLE IF NOT EXISTS {t} (
    lease_name  VARCHAR(64)  NOT NULL PRIMARY KEY,
    owner       VARCHAR(255) NOT NULL DEFAULT '',
    lease_until BIGINT       NOT NULL DEFAULT 0,
    generation  BIGINT       NOT NULL DEFAULT 0,
    swept_at    BIGINT       NOT NULL DEFAULT 0,
    removed     BIGINT       NOT NULL DEFAULT 0
) ENGINE = InnoDB;
`

const (
	// qEnsure makes the lease row, free, if it is missing.
	qEnsure      = `INSERT INTO {t} (lease_name) VALUES (?) ON CONFLICT DO NOTHING`
	qEnsureMySQL = `INSERT IGNORE INTO {t} (lease_name) VALUES (?)`
	// qTake takes the lease for owner if owner holds it or it ran out. The
	// generation always changes, so that MySQL counts the row as affected
	// even when nothing else does.
	qTake = `UPDATE {t} SET owner = ?, lease_until = {now} + ?, generation = generation + 1
WHERE lease_name = ? AND (owner = ? OR lease_until <= {now})`
	// qRenew extends owner's lease; no row means another replica took it.
	qRenew = `UPDATE {t} SET lease_until = {now} + ?, generation = generation + 1
WHERE lease_name = ? AND owner = ?`
	// qDone records the pass and holds the lease until the next one is due.
	qDone = `UPDATE {t} SET lease_until = {now} + ?, swept_at = {now}, removed = ?, generation = generation + 1
WHERE lease_name = ? AND owner = ?`
)

// queries are the statements of one dialect and table.
type queries struct {
	schema, ensure, take, renew, done string
}

func newQueries(d steadfast.Dialect, t sqldb.Table) (queries, error) {
	var now, schema, ensure string
	switch d {
	case steadfast.Postgres:
		now, schema, ensure = postgresNow, schemaPostgres, qEnsure
	case steadfast.SQLite:
		now, schema, ensure = sqliteNow, schemaSQLite, qEnsure
	case steadfast.MySQL:
		now, schema, ensure = mysqlNow, schemaMySQL, qEnsureMySQL
	default:
		return queries{}, fmt.Errorf("unknown dialect %v (want steadfast.Postgres, SQLite or MySQL)", d)
	}
	fill := func(s string) string {
		s = strings.NewReplacer("{t}", t.String(), "{now}", now).Replace(s)
		if d == steadfast.Postgres {
			s = numbered(s)
		}
		return s
	}
	return queries{
		schema: fill(schema),
		ensure: fill(ensure),
		take:   fill(qTake),
		renew:  fill(qRenew),
		done:   fill(qDone),
	}, nil
}

// numbered turns ? placeholders into PostgreSQL's $1, $2...
func numbered(s string) string {
	var b strings.Builder
	n := 0
	for _, c := range s {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// exec runs one lease statement, retrying the transient conflicts a user
// would retry (SQLite busy, MySQL deadlock), and reports whether it changed
// a row.
func (s *Sweeper) exec(ctx context.Context, query string, args ...any) (bool, error) {
	var n int64
	err := sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		res, err := s.db.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n > 0, err
}

// take takes or renews the lease, making its row first if needed.
func (s *Sweeper) take(ctx context.Context) (bool, error) {
	if _, err := s.exec(ctx, s.q.ensure, leaseName); err != nil {
		return false, err
	}
	return s.exec(ctx, s.q.take, s.owner, micros(s.cfg.lease), leaseName, s.owner)
}

func (s *Sweeper) renew(ctx context.Context) (bool, error) {
	return s.exec(ctx, s.q.renew, micros(s.cfg.lease), leaseName, s.owner)
}

func (s *Sweeper) done(ctx context.Context, removed int64) error {
	_, err := s.exec(ctx, s.q.done, micros(s.cfg.interval), removed, leaseName, s.owner)
	return err
}

// Schema returns the SQL that Migrate runs, for users who manage their
// schema with their own tools.
func (s *Sweeper) Schema() string { return s.q.schema }

// Migrate creates the lease table if it does not exist. It is safe to run
// at every start and from several replicas at once (on PostgreSQL a
// transaction-scoped advisory lock makes them take turns, as concurrent
// CREATE TABLE IF NOT EXISTS can collide in its catalog).
func (s *Sweeper) Migrate(ctx context.Context) error {
	if s.dialect != steadfast.Postgres {
		if _, err := s.exec(ctx, s.q.schema); err != nil {
			return fmt.Errorf("housekeeping: migrate: %w", err)
		}
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("housekeeping: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "steadfast.housekeeping."+s.cfg.table.String()); err != nil {
		return fmt.Errorf("housekeeping: migrate: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q.schema); err != nil {
		return fmt.Errorf("housekeeping: migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("housekeeping: migrate: %w", err)
	}
	return nil
}
