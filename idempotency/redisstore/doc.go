// Package redisstore is an idempotency.Store on Redis through go-redis v9's
// redis.UniversalClient, so standalone Redis, Sentinel and Redis Cluster all
// work.
//
// Each record is one string under one key (WithPrefix + the idempotency
// key), and every operation is one round trip on that single key, which
// keeps it atomic and cluster-safe. Claim sends SET NX GET with the new
// claim: a free key is taken and a completed record returned by the same
// command, so a new key and a replay cost one plain command each (Redis
// 7.0 or later; older servers get the same from a Lua script). A claim
// that finds another one in progress runs a Lua script, which reads what
// is left of its lease and takes it over if its holder died. Renew, Complete and
// Release are Lua scripts that succeed only with the current fencing token
// (a random 63-bit number, compared for equality). Get is a GET and a
// PTTL.
//
// Time is the Redis server's and lives in key expiry: a claim's key expires
// at the end of its lease plus WithAbandonedRetention, a completed record's
// at the end of its retention; Record.TTL is derived from the key's PTTL,
// except for a completed record found by Claim: Complete writes its expiry
// (read from Redis's TIME) into it, and Claim reckons what is left on the
// server's clock as read at most a second before (through the same
// connection pool, as of when that reading was sent, so never longer than
// what is left, to the millisecond). There is nothing to purge. Records
// written by the store's earlier versions (hashes) are still read,
// completed, released and taken over until they expire.
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
