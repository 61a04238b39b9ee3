// Package durabletest holds the workloads that the tests and benchmarks of
// the durable idempotency stores (idempotency/sqlstore and
// idempotency/redisstore) share, so that each store runs the very same
// scenario:
//
//   - [ExactlyOnce]: four replicas, each an [idempotency.Middleware] on a
//     store of its own over one shared backend, receive webhook events (keyed
//     by the webhook-id header), each delivered three times, two of the
//     deliveries concurrently to different replicas; every event's handler
//     must run exactly once.
//   - [Outage]: the same replicas while the backend server goes down and
//     comes back; first deliveries during the outage must get 503 and run
//     nothing, every delivery must end in 200 afterwards, and only events in
//     flight at the outage may run twice.
//   - [Paired]: a benchmark that runs a store operation and its hand-written
//     baseline alternately from the same concurrent callers; [NewKey] is the
//     store side of the new-key comparison.
//
// It is imported only by _test files.
package durabletest
