package catchup

import (
	"context"
	"database/sql"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
)

// requestTx returns the transaction the idempotency middleware opened for
// the request (transactional mode), or nil.
func requestTx(ctx context.Context) steadfast.Tx {
	if t := idempotency.TxFrom(ctx); t != nil {
		if tx, ok := t.Driver().(*sql.Tx); ok {
			return tx
		}
	}
	return nil
}
