// Package redislimit shares the quotas of ratelimit.Limiter across the
// replicas of a service through Redis: give a Store to ratelimit.WithStore.
//
// Each decision is one EVALSHA of one Lua script, atomic, that reads the time
// from Redis (TIME), never from a replica: a GCRA (generic cell rate
// algorithm) per window of the quota, the limit a provider announced for
// the key and the key's pause, all in one hash per key, <prefix>{<key>}, so
// that a key's windows live in one slot of a Redis Cluster. A hash expires
// once it holds nothing that a new one would not: idle keys cost no memory.
//
// Every call is bounded by WithTimeout (50ms by default), because the
// limiter falls back to its local share only when a decision fails; go-redis
// itself would wait for its read timeout, seconds by default. The client
// must therefore be made with ContextTimeoutEnabled: true, and New refuses
// one that is not.
//
// go-redis/redis_rate, a well-kept GCRA limiter on Redis, was considered: it
// decides one limit per call and only lets a request through now or refuses
// it, while a Limiter needs every window of a key decided in one atomic step,
// a turn reserved for a request that waits (so that waiters are served one
// interval apart instead of polling), and the announced limit and pause kept
// beside the windows. The benchmarks module compares the two.
package redislimit
