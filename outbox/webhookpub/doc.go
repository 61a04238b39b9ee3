// Package webhookpub is an outbox publisher that delivers messages as signed
// HTTP webhooks, per Standard Webhooks.
//
// Each outbox topic names an Endpoint: a URL and the secrets its messages are
// signed with. Every relay attempt is one HTTP POST (the relay's persisted
// retries are the retries: there is no retry loop in here), signed afresh with
// the message id as webhook-id, which stays the same on every attempt, and
// the current time as webhook-timestamp. The receiver deduplicates on
// webhook-id, for instance with webhook.NewMiddleware in front of
// idempotency.Middleware.
//
// The endpoint's answer becomes the outcome the relay acts on:
//
//   - 2xx: delivered;
//   - 429 or 503 with Retry-After: retry after that delay (retry.After);
//   - 409 with Retry-After: the same (a receiver behind idempotency.Middleware
//     answers so while an earlier delivery of the message is still running);
//   - 408, 425, 429, 5xx, transport errors and timeouts: retry after the
//     relay's backoff;
//   - 410 Gone: the endpoint is paused (outbox.Pause) for WithGonePause: its
//     messages wait without spending attempts, and the pause is logged at
//     warn level;
//   - any other 4xx (409 without Retry-After included): permanent
//     (retry.Permanent), the message is dead-lettered;
//   - 3xx: redirects are never followed (a signed delivery must not be sent
//     to a URL nobody configured); the message is retried, so a redirect
//     that is fixed in time loses nothing.
//
// Each endpoint has its own circuit breaker (package breaker): transport
// errors, timeouts and 5xx count as failures; while the circuit is open the
// endpoint is paused for the remaining open time, so a dead partner neither
// spends its messages' attempts nor slows the others.
package webhookpub
