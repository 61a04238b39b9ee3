// Package ops is the operator's page: an http.Handler that a service
// mounts behind its own authentication to see, and act on, what steadfast
// is doing for it.
//
//	page, err := ops.New(
//		ops.WithOutbox(outboxStore),      // *sqloutbox.Store
//		ops.WithIdempotency(idemStore),   // *sqlstore.Store or *redisstore.Store
//		ops.WithActions(func(r *http.Request) string { return userOf(r) }),
//	)
//	relay, err := outbox.NewRelay(outboxStore, page.Observe(publisher))
//	mux.Handle("/ops/", requireAdmin(http.StripPrefix("/ops", page)))
//
// Every figure says where it comes from. What the database holds is the
// same on every replica: the outbox's backlog per topic and destination,
// its paused destinations, its dead letters (with filters), one message
// with its headers, payload and last error, and idempotency records looked
// up by scope, method, route and key. What this process saw is labelled as
// this replica's: its deliveries and failures over the last 15 minutes,
// counted by the publisher Observe wraps (a fixed ring in memory).
//
// Actions (requeue and discard dead letters, one or a selection; resume a
// paused destination; release a stuck idempotency claim) are off unless
// WithActions enables them. Each is a POST guarded by net/http's
// CrossOriginProtection; discarding and releasing ask for confirmation on
// a page of their own; each is logged with who did it.
//
// The page is rendered on the server with html/template from embedded
// files: no script, no build step, nothing loaded from elsewhere (its
// Content-Security-Policy forbids it). It reads on a phone (no horizontal
// scrolling at 375 px: tables turn into cards). It never shows headers
// that may hold secrets (Authorization, cookies, tokens, signatures, keys)
// nor credentials written in URLs.
package ops
