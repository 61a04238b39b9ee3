// Package breaker stops calling what is down: circuit breakers for functions
// and for HTTP clients, with a fallback, a bulkhead and, through the
// subpackage redisshare, state shared across the replicas of a service.
//
// A [Breaker] wraps github.com/sony/gobreaker/v2 and adds what gobreaker does
// not do by itself:
//
//   - a classifier ([WithClassifier]) that sees the caller's context and may
//     ignore an outcome, so that the caller's own cancellation
//     (context.Canceled) is never counted, while timeouts are;
//   - an [OpenError] that matches [ErrOpen] and carries the remaining open time
//     through the error protocol's RetryAfter() time.Duration, which package
//     retry understands without either package importing the other;
//   - state-change hooks that run after the call that caused the change
//     returned, outside any lock, so a hook may call back into the breaker
//     (gobreaker calls its own hook under its mutex);
//   - a bulkhead (a bound on concurrent calls, golang.org/x/sync/semaphore)
//     with a bounded wait;
//   - one slog line per transition and OpenTelemetry metrics;
//   - state shared across replicas through Redis ([WithSync] with a
//     *redisshare.Share).
//
// [Execute] and [ExecuteWithFallback] run a function through a breaker. A
// [Group] holds one breaker per key, created lazily and bounded in number.
// [Transport] is an http.RoundTripper with one breaker per host.
//
// # Options
//
// New, NewGroup and NewTransport share one [Option] type: every option of a
// breaker may be given to NewGroup and NewTransport, which apply it to each
// breaker they make. WithMaxBreakers applies to NewGroup and NewTransport,
// WithKeyFunc and WithFallback to NewTransport only. Each constructor refuses,
// with an error that names it, an option that is nil, does not apply to it or
// makes no sense; a nil breaker, function or fallback given to Execute or
// ExecuteWithFallback is an error too, never a panic.
//
// # Defaults
//
// A breaker trips when at least half of the calls of the last 10 seconds
// failed (a rolling window of 10 one-second buckets) and at least 20 calls
// completed in that window ([WithFailureRatio], [WithWindow]); or, if
// [WithConsecutiveFailures] is given, after that many failures in a row. It
// stays open 30 seconds ([WithOpenDuration]), then lets 1 probe through
// ([WithHalfOpenProbes]): if every probe succeeds it closes, one failure
// re-opens it.
//
// # Time
//
// gobreaker keeps its own clock, time.Now, and it cannot be replaced: the open
// duration, the window and the remaining open time are wall clock durations,
// and the bulkhead's bounded wait is a real timer. Programs test them with
// testing/synctest, in which time.Now and timers follow the bubble's clock.
//
// # Composition
//
// For an outbound client, outermost first: the caller's deadline, then retry
// (with its per-attempt timeout), then breaker, then the base transport. An
// open circuit returns an error whose RetryAfter() is the remaining open
// time: retry either waits it out, when it fits the deadline, or gives up at
// once.
package breaker
