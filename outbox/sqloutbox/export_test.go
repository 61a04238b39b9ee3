package sqloutbox

import "context"

// ClaimSQL and SettleSQL give the external tests the statements that Claim
// and Settle run, so that their plans can be checked.
func (s *Store) ClaimSQL() string  { return s.q.claim }
func (s *Store) SettleSQL() string { return s.q.settle }

// Sweep runs one unpark sweep (PostgreSQL) from the store's cursor.
func (s *Store) Sweep(ctx context.Context) error { return s.pgUnpark(ctx) }
