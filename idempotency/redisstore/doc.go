// Package redisstore is an idempotency.Store on Redis through go-redis v9's
// redis.UniversalClient, so standalone Redis, Sentinel and Redis Cluster all
// work.
//
// Each record is a hash under one key (WithPrefix + the idempotency key).
// Every operation is one Lua script or one command touching that single key,
// which keeps it atomic and cluster-safe: Claim takes a free or abandoned key
// and sets its lease and a fresh fencing token (a random 63-bit number,
// compared for equality); Renew, Complete and Release succeed only with the
// current token.
//
// Time is the Redis server's (TIME, in milliseconds), and records are kept
// by key expiry: a claim lives for its lease plus WithAbandonedRetention, a
// completed record for its retention. There is nothing to purge.
//
// # What Redis must provide
//
// The store keeps its promises only as long as Redis keeps its data:
//
//   - Persistence: run Redis with AOF (appendonly yes). With the default
//     appendfsync everysec, a crash of the Redis host loses up to about one
//     second of writes: claims and completions acknowledged in that second
//     are forgotten, so a retry arriving afterwards runs its handler again.
//     appendfsync always closes that window at a cost in throughput. Without
//     persistence a restart forgets every record.
//   - Eviction: use maxmemory-policy noeviction (or a volatile-* policy on a
//     Redis used only for keys with a TTL you can afford to lose): an evicted
//     record is a forgotten record.
//   - Replication is asynchronous: a failover may lose the last writes, with
//     the same effect as above. Use WAIT-free setups knowingly.
//
// For effects that must happen exactly once, keep them in a SQL database and
// use idempotency/sqlstore's transactional path instead.
package redisstore
