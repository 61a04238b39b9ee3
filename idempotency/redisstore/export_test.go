package redisstore

import (
	"context"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// ClaimByScript makes s claim with its script, as it does on a Redis older
// than 7.0 (which refuses SET NX GET).
func ClaimByScript(s *Store) { s.noSetGet.Store(true) }

// ClaimTwice sends one claim twice, as the client does when the answer to
// a command that ran was lost, and returns the second answer.
func ClaimTwice(ctx context.Context, s *Store, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	c := s.newClaimCall(key, fingerprint, lease, newToken())
	if _, err := s.claimWith(ctx, &c); err != nil {
		return idempotency.Claim{}, err
	}
	return s.claimWith(ctx, &c)
}

// ClockFresh reports whether the store's reading of the server's clock is
// recent enough for a claim to send no other command.
func ClockFresh(s *Store) bool { return s.clock.fresh(time.Now()) }
