package sqloutbox

// ClaimSQL and SettleSQL give the external tests the statements that Claim
// and Settle run, so that their plans can be checked.
func (s *Store) ClaimSQL() string  { return s.q.claim }
func (s *Store) SettleSQL() string { return s.q.settle }
