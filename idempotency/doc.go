// Package idempotency does a piece of work once per key, however often it is
// asked: HTTP middleware for APIs and webhook receivers (Middleware), and Do
// for any function.
//
// # How it works
//
// Both claim the key in a Store before running the work: an atomic claim
// under a short lease (30s by default) with a fencing token, renewed every
// third of the lease while the work runs. A duplicate that arrives while the
// work runs is told to come back (409 with Retry-After, or ErrInProgress) or,
// in wait mode, waits for the result; one that arrives after it gets the
// stored result, for the retention (24h by default). Work that fails in a
// way worth retrying (a 5xx, a panic, an error not marked Final) releases the
// claim so that the retry runs it again. A holder that died stops renewing;
// once its lease ends the next claimer takes over, and the dead holder's late
// writes are rejected because its token is stale. A key reused for different
// input (another fingerprint) is refused and the stored record left as it
// was.
//
// The result is stored before the claim ends, so a duplicate never finds the
// key free between the two: it replays.
//
// # Stores
//
// MemoryStore keeps records in memory, bounded by records and bytes, with a
// share per tenant (it refuses new keys rather than evict live ones);
// idempotency/sqlstore (PostgreSQL, SQLite, MySQL/MariaDB) and
// idempotency/redisstore keep them durably and share them between
// instances. idempotency/storetest checks any Store. Every store holds to
// the same limits (keys of 1 to 1024 bytes, fingerprints of at most 255);
// the middleware's scoped keys always fit them (ScopedKey), and a store that
// refuses the client's input (ErrTooLarge, ErrInvalid) gets a 400, never a
// 503. Time is each store's own: the shared stores keep leases and
// retention on their server's clock, and report what is left (Record.TTL).
//
// With WithTransaction and a TxStore, the claim is taken inside a database
// transaction that the work writes in (TxFrom), and the result commits with
// the work's own writes: a crash between the two cannot happen. TxFrom
// documents the rules: a savepoint after the claim, refusals that leave no
// writes, a transaction detached from the client and bounded by
// WithMaxTxDuration, duplicates answered at once instead of queueing on the
// claim's row lock.
//
// # The HTTP rules
//
// Middleware follows the IETF draft "The Idempotency-Key HTTP Header Field"
// and what Stripe does; where they differ, the draft wins. Where this
// package goes beyond the draft: GET, HEAD, OPTIONS and TRACE pass through
// untouched; 3xx responses are stored along with 2xx and 4xx; the key is
// namespaced by scope (WithScope), method and route; the fingerprint covers
// the query string (WithoutQuery leaves it out); a response too large to
// store is answered, and its retries get a 422 problem
// (ProblemResponseNotStored) rather than a rerun.
//
// # Telemetry
//
// Counters, through the OpenTelemetry metric API (WithMeterProvider), each
// with the attribute idempotency.kind ("http" or "do"):
// steadfast.idempotency.executions (work run), .replays (stored results
// returned), .conflicts (duplicates turned away while in progress),
// .mismatches (keys reused for other input) and .store_errors (store calls
// that failed, a full store included). Logs go to a *slog.Logger
// (WithLogger): nothing per request at info level; store failures at warn;
// a result that ran but could not be stored, which may let the work run
// again, at error.
//
// # Options
//
// One Option type configures Middleware, NewRunner (and Do, for one call)
// and NewMemoryStore; each With function says which of them it applies to,
// and a constructor refuses, naming both, an option that is not its own.
// Every constructor checks its options and returns an error naming the one
// at fault.
//
// # Operators
//
// A record can be looked up with Store.Get, a stuck claim freed by taking it
// over after its lease or with Store.Release and its token (Record.Token),
// and MemoryStore.Purge drops expired records (the SQL and Redis stores
// have their own). ScopedKey gives the stored key of a request.
package idempotency
