// Package idempotency does a piece of work once per key, however often it is
// asked: HTTP middleware for APIs and webhook receivers (Middleware), and Do
// for any function.
//
// Both claim the key in a Store before running the work: an atomic claim
// under a short lease with a fencing token, renewed while the work runs. A
// duplicate that arrives while the work runs waits or is told to come back
// (409); one that arrives after it replays the stored result. Work that fails
// in a way worth retrying releases the claim so that the retry runs it again.
// A holder that died loses its lease, the next claimer takes over, and the
// dead holder's late writes are rejected by its stale token.
//
// MemoryStore keeps records in memory, bounded; idempotency/sqlstore and
// idempotency/redisstore keep them durably; idempotency/storetest checks any
// Store.
package idempotency
