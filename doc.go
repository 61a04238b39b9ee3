// Package steadfast makes a service's integrations survive the outside world.
// It is a set of small packages that an application wires around its own
// http.Clients, http.Handlers and database transactions:
//
//   - idempotency: do this once per key (HTTP middleware, Do for any
//     function, durable stores in idempotency/sqlstore and
//     idempotency/redisstore);
//   - retry: try again, safely (a retry loop and an http.RoundTripper);
//   - breaker: stop calling what is down (circuit breakers, fallback,
//     bulkhead);
//   - outbox: never lose an event that was committed (a transactional outbox,
//     a relay, publishers for webhooks, NATS, RabbitMQ and Kafka);
//   - webhook: trust only what was signed (Standard Webhooks and Stripe-style
//     signatures).
//
// Every package speaks the same words: options are the package's Option,
// made by its With... functions and validated by the constructor, which
// names the option at fault; errors that ask for a delay have a
// RetryAfter() time.Duration method, and permanent ones are recognised by
// retry.IsPermanent, without the packages importing each other.
//
// This package itself holds only Tx, the transaction that the SQL backends
// take from the caller.
package steadfast
