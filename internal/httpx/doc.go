// Package httpx holds the HTTP pieces that several steadfast packages share:
// the one Retry-After parser, the one application/problem+json writer and the
// one bounded request-body reader. It is internal: users meet these through
// retry, breaker, idempotency, webhook, ratelimit and the outbox publishers.
package httpx
