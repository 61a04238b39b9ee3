// Package retry tries again, safely: a retry loop for any function (Do,
// DoValue) and an http.RoundTripper for any http.Client (Transport).
//
// # Policy
//
// A Policy, made once with New and shared, holds the settings: the number of
// attempts, capped exponential backoff with full jitter (a backoff/v4 BackOff,
// fresh for each call), an optional per-attempt timeout, a classifier, the
// longest Retry-After it waits for, a retry budget, an OnRetry hook, a logger
// and a meter provider. Every option documents its default; New and
// NewTransport share one Option type, and each refuses, with an error that
// names it, an option that is nil, belongs to the other constructor or makes
// no sense. A nil Policy or function given to Do, DoValue or NewTransport is
// an error too, never a panic.
//
// The caller's context is the overall deadline. Each attempt runs with that
// context, or with a child bounded by the per-attempt timeout whose cause is
// ErrAttemptTimeout, so a slow attempt (retried) is told apart from the
// caller giving up (never retried). A wait that would end at or after the
// deadline is not started, and cancelling the context during a wait returns
// at once.
//
// # The error protocol
//
// Any error can steer the loop without importing this package's types: an
// error with a method Permanent() bool that returns true stops it at once
// (see Permanent and IsPermanent), and an error with a method
// RetryAfter() time.Duration sets the next wait (see After and RetryAfter),
// up to the policy's maximum; beyond that, or beyond the deadline, the call
// ends at once with a *RetryAfterError that carries the delay asked for.
// Callers that persist their attempts instead of looping (such as an outbox
// relay) compute the same waits with the stateless Delay.
//
// # Time
//
// The waits, the per-attempt timeout and the budget's window run on the
// standard library's clock, so programs test their retries with
// testing/synctest instead of an injected clock.
//
// # Giving up
//
// When the policy stops a call that is still failing it returns a
// *GaveUpError, which matches ErrGaveUp and its Reason (ErrAttemptsExhausted,
// ErrDeadlineTooClose, ErrBudgetExhausted, ...) with errors.Is, carries the
// attempt count and the last HTTP status, and unwraps to the last error.
//
// # Retry budget
//
// Retries are limited to a fraction of recent requests plus a small floor,
// counted over a sliding window, in the manner of Finagle's and Envoy's retry
// budgets (see WithBudget): during an outage the retries stay under a fixed
// fraction of the requests instead of multiplying the load. Do shares one
// budget per Policy; a Transport keeps one per host.
//
// # HTTP
//
// Transport follows net/http's own replay rule: only idempotent methods, or
// requests carrying an idempotency key header, with a body that can be sent
// again, are retried, and only on outcomes that another attempt may change.
// See Transport for the exact rules.
//
// For an outbound client, compose from the outside in: the caller's context
// (the overall deadline), then this Transport (retries, budget, per-attempt
// timeout), then a circuit breaker, then the base transport. The breaker sees
// every attempt, counts an attempt's timeout as a failure and the caller's
// cancellation as none; when it is open, its error asks for a delay through
// RetryAfter, which this package honours or gives up on at once.
package retry
