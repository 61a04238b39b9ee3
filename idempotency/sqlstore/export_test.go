package sqlstore

import (
	"context"
	"database/sql"

	"github.com/steadfast-go/steadfast/idempotency"
)

// Test hooks.

// DBOf returns the database the store was created with.
func DBOf(s *Store) *sql.DB { return s.db }

// Lookup returns the record of key as stored, expired or not (not yet
// purged).
func Lookup(ctx context.Context, s *Store, key string) (idempotency.Record, error) {
	rec, err := s.lookup(ctx, s.db, key, "")
	return rec.Record, err
}
