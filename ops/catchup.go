package ops

import (
	"context"
	"errors"

	"github.com/steadfast-go/steadfast/catchup"
)

// CatchupStore is what the page reads of catch-up pollers' state: their
// cursors, leases and lag. *sqlcatchup.Store implements it.
type CatchupStore interface {
	Cursors(ctx context.Context) ([]catchup.Cursor, error)
}

// WithCatchup shows store's catch-up sources: cursor, the replica holding
// the lease, how long ago the cursor advanced, the lag (age of the newest
// event applied) and the failing events and dead letters, from the
// database. store must not be nil. Off by default.
func WithCatchup(store CatchupStore) Option {
	return newOption("WithCatchup", func(c *config) error {
		if isNil(store) {
			return errors.New("store is nil")
		}
		c.catchup = store
		return nil
	})
}
