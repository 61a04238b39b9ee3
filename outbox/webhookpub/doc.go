// Package webhookpub is an outbox publisher that delivers messages as signed
// HTTP webhooks, per Standard Webhooks.
//
// Each message's destination names an Endpoint: a URL, the secrets its
// messages are signed with, and headers. Endpoints come from a static map
// given to New, and, for a platform that sends webhooks to its customers,
// from a resolver (WithResolver) that looks a destination up in the
// application's own table of subscriptions, with a bounded cache
// (WithResolverCache). Every relay attempt is one HTTP POST (the relay's
// persisted retries are the retries: there is no retry loop in here), signed
// afresh with the message id as webhook-id, which stays the same on every
// attempt, and the current time as webhook-timestamp. The receiver
// deduplicates on webhook-id, for instance with webhook.NewMiddleware in
// front of idempotency.Middleware. While a secret is rotated, the endpoint
// lists the old and the new one, and every delivery carries a signature by
// each.
//
// The endpoint's answer becomes the outcome the relay acts on:
//
//   - 2xx: delivered;
//   - 429 or 503 with Retry-After: retry after that delay (retry.After);
//   - 409 with Retry-After: the same (a receiver behind idempotency.Middleware
//     answers so while an earlier delivery of the message is still running);
//   - 408, 425, 429, 5xx, transport errors and timeouts: retry after the
//     relay's backoff;
//   - 410 Gone: the destination is paused (outbox.Pause) for WithGonePause:
//     the pause is recorded in the store for every relay, its messages wait
//     without spending attempts, the pause is logged at warn level, and an
//     operator lifts it early with the store's Resume (outboxctl resume);
//   - any other 4xx (409 without Retry-After included): permanent
//     (retry.Permanent), the message is dead-lettered;
//   - 3xx: redirects are never followed (a signed delivery must not be sent
//     to a URL nobody configured); the message is retried, so a redirect
//     that is fixed in time loses nothing.
//
// A failed answer's error wraps a *retry.StatusError and quotes the first
// 200 bytes of its body, printable; never a header. A message that cannot be
// sent as it is (a header that is not a valid HTTP field, an id that cannot
// be a webhook-id) is permanent, and is found before anything is sent.
//
// # Addresses
//
// Tenants choose webhook URLs, so by default the publisher refuses to
// connect to any address that is not globally reachable: loopback, private
// networks, link-local (the cloud metadata address 169.254.169.254), shared
// CGNAT space, unique-local IPv6, unspecified and the other special-purpose
// ranges of IANA's registries. The check runs when a connection is dialled
// (a net.Dialer Control function), on the address actually dialled after the
// name was resolved, IPv4-mapped IPv6 addresses unmapped first, so no name
// that resolves to an internal address passes, and its publishing transport
// uses no proxy from the environment (through a proxy the dialled address
// would be the proxy's). A refused address is a permanent error matching
// ErrForbiddenAddress. WithAllowedNetworks opens named networks (internal
// services, or loopback in tests and examples); WithUnguardedClient sends
// through the caller's own client and leaves the check to it.
//
// # Breakers and pauses
//
// Each destination has its own circuit breaker (package breaker): transport
// errors, timeouts and 5xx count as failures; while the circuit is open the
// destination is paused for the remaining open time, so a dead partner
// neither spends its messages' attempts nor slows the others. A refused
// address, a malformed message and an unknown destination never count.
//
// # Quotas
//
// WithRateLimit gives destinations a quota (a ratelimit.Limiter keyed by the
// destination, shared by every replica when it has a Store). The relay takes
// the budget of each delivery before it sends it, with Throttle, when it is
// given outbox.WithThrottle(p.Throttle): a destination without budget is held
// back in the relay's memory, without spending attempts and without holding
// up the others. Publish observes every response of a limited destination
// (ratelimit's Observe), so what the endpoint announces (a 429's
// Retry-After, RateLimit and X-RateLimit-* headers) narrows its quota before
// it has to refuse a request.
package webhookpub
