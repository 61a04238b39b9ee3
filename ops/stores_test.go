package ops_test

import (
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/ops"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/ratelimit"
)

// The steadfast stores implement what the page takes.
var (
	_ ops.OutboxStore      = (*sqloutbox.Store)(nil)
	_ ops.IdempotencyStore = (*sqlstore.Store)(nil)
	_ ops.IdempotencyStore = (*redisstore.Store)(nil)
	_ ops.CatchupStore     = (*sqlcatchup.Store)(nil)
	_ ops.RateLimiter      = (*ratelimit.Limiter)(nil)
)
