package sqloutbox

import (
	"context"

	"github.com/steadfast-go/steadfast"
)

// SettleSQL gives the external tests the statement that Settle runs, so
// that its plan can be checked (ClaimStatement gives the claim's).
func (s *Store) SettleSQL() string { return s.q.settle }

// Sweep runs one unpark sweep (PostgreSQL, MySQL) from the store's cursor.
func (s *Store) Sweep(ctx context.Context) error {
	if s.dialect == steadfast.MySQL {
		return s.mysqlUnpark(ctx)
	}
	return s.pgUnpark(ctx)
}

// ClaimStatement returns the statement and arguments of a PostgreSQL claim
// of up to limit messages, excluding the given destinations.
func (s *Store) ClaimStatement(limit int, exclude []string) (string, []any) {
	args := []any{limit, int64(7), 10.0}
	if len(exclude) == 0 {
		return s.q.claim, args
	}
	return s.q.claimExclude, append(args, exclude)
}

// WithFillFactor sets the fill factor of the PostgreSQL table (benchmarks
// compare them).
func WithFillFactor(n int) Option {
	return newOption("WithFillFactor", func(c *config) error { c.fillFactor = n; return nil })
}
