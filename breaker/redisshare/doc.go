// Package redisshare shares the state of breakers across the replicas of a
// service through Redis (go-redis v9, any UniversalClient: a single server,
// Sentinel or Cluster).
//
// A [Share] is a [breaker.Syncer]: breakers made with breaker.WithSync(share)
// (or a Group or Transport made with that option) register with it. A background loop ([Share.Run]) then, for every
// registered breaker, one pipelined round trip per pass:
//
//   - pushes the successes and failures the replica counted since its last
//     pass into a rolling window kept in Redis (same window and buckets as
//     the breaker's own, timed by the Redis server's clock), and the remaining
//     open time of the replica's local breaker if it is open;
//   - judges the shared window with the breaker's trip condition (failure
//     ratio and minimum calls; a breaker tripping on consecutive failures
//     shares its open periods only) and, if it trips, opens the shared
//     circuit for the breaker's open duration;
//   - pulls the shared open period, and holds the local breaker open until it
//     ends (calls are rejected with a *breaker.OpenError whose Shared field
//     is true), or releases the hold.
//
// The call path never touches Redis and never takes a distributed lock (unlike
// gobreaker's DistributedCircuitBreaker, which serialises every call through
// a Redis mutex): a call reads an atomic pointer and adds to an atomic
// counter; everything else happens in the loop.
//
// # Staleness bound
//
// A replica whose local breaker opens wakes its loop at once; the other
// replicas see the shared open state at their next pass. So every replica
// holds the circuit open at most [Share.StalenessBound] = interval + 2 ×
// timeout (1s with the defaults of [WithInterval] and [WithTimeout]) after
// one replica's breaker opened, or after the shared window tripped. Counts
// reach the window within interval + timeout.
//
// # Limits
//
// When the shared open period ends, each replica resumes with its own local
// breaker (closed unless it tripped itself): half-open probing is per
// replica, not shared. A failed sync drops the counts it carried rather than
// sending them late.
//
// # Redis unreachable
//
// A failed pass is logged once, at warn level, with "breakers use local
// state"; the breakers go on with their local state (a hold already pulled
// lasts until its end, which it knew). The first pass that succeeds again
// logs that sharing resumed.
package redisshare
