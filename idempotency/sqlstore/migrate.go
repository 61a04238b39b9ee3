package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed migrations
var migrations embed.FS

// Schema returns the SQL that Migrate runs for dialect d with the given table
// name (DefaultTable when empty), for users who apply migrations with their
// own tool. Every statement is idempotent (CREATE ... IF NOT EXISTS) and ends
// with a semicolon. The files are also readable in the module source under
// idempotency/sqlstore/migrations/<dialect>/.
func Schema(d Dialect, table string) (string, error) {
	stmts, err := schemaStatements(d, table)
	if err != nil {
		return "", err
	}
	return strings.Join(stmts, "\n\n") + "\n", nil
}

func schemaStatements(d Dialect, table string) ([]string, error) {
	switch d {
	case Postgres, SQLite, MySQL:
	default:
		return nil, fmt.Errorf("sqlstore: Schema: unknown dialect %v", d)
	}
	if table == "" {
		table = DefaultTable
	}
	if !identRE.MatchString(table) {
		return nil, fmt.Errorf("sqlstore: Schema: table %q is not a lower-case identifier of 1 to 40 characters [a-z0-9_]", table)
	}
	dir := path.Join("migrations", d.String())
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var stmts []string
	for _, n := range names {
		b, err := fs.ReadFile(migrations, path.Join(dir, n))
		if err != nil {
			return nil, err
		}
		text := strings.ReplaceAll(string(b), DefaultTable, table)
		stmts = append(stmts, splitStatements(text)...)
	}
	return stmts, nil
}

// splitStatements splits a migration file at lines that end with a
// semicolon. The files contain no semicolon elsewhere.
func splitStatements(text string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for _, line := range strings.SplitAfter(text, "\n") {
		cur.WriteString(line)
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if st := strings.TrimSpace(cur.String()); st != "" {
				out = append(out, st)
			}
			cur.Reset()
		}
	}
	return out
}

// Migrate creates the store's tables and indexes if they do not exist. It is
// safe to call on every start and from several processes at once (on
// PostgreSQL it serialises them with an advisory lock). It returns the first
// statement's error, wrapped.
func (s *Store) Migrate(ctx context.Context) error {
	stmts, err := schemaStatements(s.dialect, s.cfg.table)
	if err != nil {
		return err
	}
	if s.dialect != Postgres {
		for _, st := range stmts {
			if _, err := s.db.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("sqlstore: migrate: %w", err)
			}
		}
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Concurrent CREATE TABLE IF NOT EXISTS can still collide in the
	// catalog; the lock (keyed by the table name) makes them take turns.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "steadfast.sqlstore."+s.cfg.table); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	for _, st := range stmts {
		if _, err := tx.ExecContext(ctx, st); err != nil {
			return fmt.Errorf("sqlstore: migrate: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	return nil
}
