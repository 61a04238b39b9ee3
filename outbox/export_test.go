package outbox

// WithClaimers sets how many claim loops run side by side (2 otherwise), for
// tests that need one.
func WithClaimers(n int) Option {
	return newOption("WithClaimers", func(c *config) error {
		c.claimers = n
		return atLeastOne("claimers", n)
	})
}
