package catchup

import (
	"context"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
)

// requestTx returns the transaction the idempotency middleware opened for
// the request (transactional mode), or nil.
func requestTx(ctx context.Context) steadfast.Tx {
	if tx, err := idempotency.TxFrom(ctx); err == nil {
		return tx
	}
	return nil
}
