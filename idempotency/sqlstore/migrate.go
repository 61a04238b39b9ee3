package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"text/template"

	"github.com/steadfast-go/steadfast"
)

//go:embed migrations
var migrations embed.FS

// Schema returns the SQL that Migrate runs, with the store's table names,
// for users who apply migrations with their own tool. Every statement is
// idempotent (CREATE ... IF NOT EXISTS, CREATE OR REPLACE FUNCTION) and
// ends with a semicolon. On PostgreSQL it creates a function beside the
// tables, {table}_claim, which the claim calls. The
// templates it is made from are in the module source under
// idempotency/sqlstore/migrations/<dialect>/.
func (s *Store) Schema() string {
	return strings.Join(s.schema, "\n\n") + "\n"
}

// schemaStatements renders the migrations of dialect d with the names n.
func schemaStatements(d steadfast.Dialect, n names) ([]string, error) {
	dir := path.Join("migrations", d.String())
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	var stmts []string
	for _, f := range files {
		t, err := template.New(f).Option("missingkey=error").ParseFS(migrations, path.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: %w", f, err)
		}
		var b strings.Builder
		if err := t.Execute(&b, n); err != nil {
			return nil, fmt.Errorf("sqlstore: migration %s: %w", f, err)
		}
		stmts = append(stmts, splitStatements(b.String())...)
	}
	return stmts, nil
}

// splitStatements splits a migration file at lines that end with a
// semicolon, outside dollar-quoted bodies ($$ ... $$, PostgreSQL's
// functions). The files contain no semicolon elsewhere.
func splitStatements(text string) []string {
	var (
		out    []string
		cur    strings.Builder
		quoted bool
	)
	for _, line := range strings.SplitAfter(text, "\n") {
		cur.WriteString(line)
		if strings.Count(line, "$$")%2 == 1 {
			quoted = !quoted
		}
		if !quoted && strings.HasSuffix(strings.TrimSpace(line), ";") {
			if st := strings.TrimSpace(cur.String()); st != "" {
				out = append(out, st)
			}
			cur.Reset()
		}
	}
	return out
}

// Migrate creates the store's tables and indexes if they do not exist, and
// on PostgreSQL (re)creates its claim function ({table}_claim). It is
// safe to call on every start and from several processes at once (on
// PostgreSQL it serialises them with an advisory lock). It returns the first
// statement's error, wrapped.
func (s *Store) Migrate(ctx context.Context) error {
	stmts := s.schema
	if s.dialect != steadfast.Postgres {
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
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "steadfast.sqlstore."+s.cfg.table.String()); err != nil {
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
