// Package benchmarks measures steadfast against the libraries a Go developer
// would otherwise pick, on the same workload and in the same run:
//
//   - retry of a function: steadfast's retry.Do against failsafe-go's
//     RetryPolicy and cenkalti/backoff/v4, with a direct call as the baseline;
//   - HTTP retry against a loopback server (first-try success, and one 503
//     then 200): retry.Transport against hashicorp/go-retryablehttp and
//     failsafe-go's failsafehttp, with the bare http.Transport as the baseline;
//   - circuit breaker (closed-state call, open-state rejection):
//     breaker.Breaker against sony/gobreaker/v2 (which it wraps), set up
//     with the same rolling window, trip rule and open duration, and
//     failsafe-go's CircuitBreaker;
//   - transactional outbox relay on PostgreSQL (messages per second from
//     insert to published, with a no-op publisher): outbox.Relay on
//     outbox/sqloutbox against Watermill's SQL forwarder and River;
//   - the idempotency middleware against the bare handler (no net/http
//     idempotency middleware from the ecosystem fits: see BENCHMARKS.md);
//   - one shared rate-limit decision on Redis: ratelimit/redislimit's Store
//     and a ratelimit.Limiter over it against go-redis/redis_rate.
//
// It is a module of its own, so that none of these peers enters the
// library's go.mod. Run it from this directory:
//
//	TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -bench . ./...
//
// The outbox benchmarks skip without TEST_POSTGRES_URL; each works in a
// PostgreSQL schema of its own, dropped at the end. The rate-limit
// benchmark skips without TEST_REDIS_URL; its keys are removed at the end.
//
// Every in-process benchmark reports this process's CPU time per op
// (cpu-ns/op) beside its wall time. The figures in BENCHMARKS.md at the
// repository root are medians of alternating rounds, each side alone in a
// process of its own, which cmd/rounds runs:
//
//	go run ./cmd/rounds -pkg . 'RetryFunc$/^success$/^steadfast$' 'RetryFunc$/^success$/^failsafe-go$'
package benchmarks
