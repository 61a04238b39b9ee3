package sqloutbox

import "context"

// SettleSQL gives the external tests the statement that Settle runs, so
// that its plan can be checked (ClaimStatement gives the claim's).
func (s *Store) SettleSQL() string { return s.q.settle }

// Sweep runs one unpark sweep (PostgreSQL) from the store's cursor.
func (s *Store) Sweep(ctx context.Context) error { return s.pgUnpark(ctx) }

// ClaimStatement returns the statement and arguments of a PostgreSQL claim
// of up to limit messages, excluding the given destinations.
func (s *Store) ClaimStatement(limit int, exclude []string) (string, []any) {
	args := []any{limit, "7c9e6679-7425-40de-944b-e07fc1f90ae7", 10.0}
	if len(exclude) == 0 {
		return s.q.claim, args
	}
	return s.q.claimExclude, append(args, exclude)
}
