// Package ratelimit stays under a provider's quota, across every replica of
// a service: a Limiter holds a quota per key (an account, a host, an
// endpoint), and a Transport waits for its key's budget before each request
// and learns from each response what the provider announces, so that a
// well-behaved provider never has to answer 429.
//
// # Quotas
//
// A quota is one or more windows (WithLimit), such as 100 requests per
// second in bursts of 25 and 10,000 per hour: a request goes when every
// window lets it. In a single process the windows are token buckets of
// golang.org/x/time/rate. [Limiter.Wait] waits for the budget, bounded by
// the caller's context: when the wait would outlast the deadline it fails
// at once, without taking anything, with a [*LimitedError] that says how
// long the wait would be; its RetryAfter method speaks the error protocol of
// package retry, so retry and the outbox relay treat it like a 429.
// [Limiter.Allow] never waits: it takes the budget when there is some, or
// says when to come back, for callers that have other work meanwhile (see
// the outbox, below).
//
// # Shared by the replicas
//
// With [WithStore] and a Store such as package ratelimit/redislimit's, the
// quota is shared: each decision is one atomic step in the store, on the
// store's clock (redislimit: one Lua script per decision, a GCRA per window,
// a key's windows in one hash), so that N replicas together stay under one
// quota. Each decision has a short timeout of its own, and a breaker guards
// the store: when it is slow or unreachable each replica falls back at once
// to its share of the quota (every rate divided by the replicas it expects),
// says so once in its log, and shares again when the store answers. Neither
// switch lets a burst through: the local share starts after this replica's
// last shared turn, with nothing saved up, and for two seconds after the
// store came back a replica keeps to its share as well, since the others may
// not have seen it come back yet.
//
// # What providers announce
//
// [Limiter.Observe], which a Transport calls for every response, reads a
// 429's Retry-After (the key stops until then, and the requests that waited
// then go one interval apart, not all at once), the RateLimit and
// RateLimit-Policy fields of the current IETF draft, the older draft's
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset, and the
// X-RateLimit-* forms (a reset in delta-seconds or as a Unix time, told apart
// with the response's Date). An announced budget lowers the key's rate to
// what remains before the reset; with a Store, every replica keeps to it.
// Concurrent responses are reconciled by the lowest remaining budget; quota
// units other than requests, unknown and malformed fields are ignored; no
// announcement lasts longer than WithMaxPause or raises a rate above the
// configured one.
//
// # Composition with retry and breaker
//
// For an outbound client, outermost first: the caller's context (the overall
// deadline), then this package's Transport, then retry.Transport (retries,
// budget, the per-attempt timeout), then breaker.Transport, then the base
// transport (see the Transport example):
//
//	caller's deadline → ratelimit.Transport → retry.Transport → breaker.Transport → base
//
// The quota wait happens in the outermost layer, once per call and before
// retry starts the first attempt and its timeout. So a wait for the budget
// is never an attempt timeout, never a breaker failure (the breaker sees
// only requests that were sent) and never a spent retry; and a wait that
// would outlast the caller's deadline fails at once, before anything was
// sent. A 429 that the provider answers anyway is retried by retry after its
// Retry-After (within retry's maximum and the deadline), and the breaker
// never counts it as a failure (it counts transport errors, timeouts and
// 5xx). When retry gives up on a 429, this Transport stops the key for its
// Retry-After.
//
// Inside retry, a quota wait would run in an attempt's context, so a long
// one would become an attempt timeout and a retry; beneath the breaker, it
// would count as a slow call. That is why the Transport goes outside. The
// cost: the attempts retry adds take no budget and are not observed one by
// one; retry's budget bounds them, and a provider's 429 sets their pace.
//
// # The outbox
//
// A relay that delivers to many destinations must not let one that is
// limited hold the others up, nor spend an attempt on a request that its
// limiter refuses. It asks [Limiter.Allow] before each delivery: when the
// destination has no budget, the error says when to come back (RetryAfter)
// and the relay moves on to other destinations, keeping the message in
// memory until then. The publisher reports the responses with
// [Limiter.Observe].
//
// # Bounds and telemetry
//
// Keys are at most 512 bytes; the limiter holds at most WithMaxKeys keys and
// forgets idle ones; metric attributes carry at most 100 distinct keys. The
// metrics (OpenTelemetry) are steadfast.ratelimit.waits, steadfast.ratelimit.wait.duration,
// steadfast.ratelimit.rejections and steadfast.ratelimit.rate; rate changes are logged through
// the limiter's *slog.Logger, never a line per request at info level.
package ratelimit
