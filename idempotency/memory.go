package idempotency

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// memoryShards is the number of independently locked parts of a MemoryStore.
// A power of two, so that a hash selects a shard with a mask.
const memoryShards = 64

// sweepPerInsert is how many records a claim that inserts a record
// inspects, on average, and removes if expired, in its shard: the lazy
// sweep that keeps memory proportional to the live records without a
// background goroutine. Every sweepEvery-th insert of a shard sweeps
// sweepEvery*sweepPerInsert records, and reads the clock once for them.
const (
	sweepPerInsert = 2
	sweepEvery     = 4
)

// recordOverhead is what a record costs beyond its key, fingerprint and
// response: the record itself and its place in the map.
const recordOverhead = 128

// MemoryStore is a Store that keeps its records in memory, for tests, single
// instances and as the fast path in front of nothing at all. It is safe for
// concurrent use; its records are split into shards with a lock each, and no
// lock is held while calling anything else. It keeps time on the process's
// own clock, which is the only one its callers share.
//
// Memory is bounded, by records (WithMaxRecords) and by bytes (WithMaxBytes:
// keys, fingerprints and responses, and a fixed overhead per record): a
// claim of a new key fails with ErrStoreFull while the store holds that many
// records or bytes that have not expired, and a response that does not fit
// any more is refused with ErrTooLarge (the middleware then keeps its
// marker, so that retries get 422 rather than a rerun). One scope (tenant,
// WithScope) may hold at most a share of either bound
// (WithMaxScopeShare). The ErrStoreFull error has a RetryAfter()
// time.Duration method that says when room will free up: when the
// earliest record the store (or the scope) holds expires; the middleware
// answers it as Retry-After. The store never evicts a record that is still
// live. Expired records (completed ones past their retention, in-progress
// ones past their lease) are removed lazily as claims insert new records,
// in full by Purge, and by Run if the application starts it.
//
// Keys are 1 to 1024 bytes and fingerprints at most 255, as on every Store.
type MemoryStore struct {
	maxRecords int64
	maxBytes   int64
	// scopeRecords and scopeBytes bound one scope's records and bytes
	// (0: no bound).
	scopeRecords, scopeBytes int64
	seed                     maphash.Seed
	// epoch starts the store's clock (now): its instants are nanoseconds
	// since epoch on the monotonic clock, which time.Since reads at a
	// third of the cost of time.Now.
	epoch time.Time
	count atomic.Int64
	bytes atomic.Int64
	token atomic.Int64
	// lastFullPurge is the instant (now) of the last purge that a claim
	// refused by a full store ran.
	lastFullPurge atomic.Int64
	// nextFree is the instant (now) at which the earliest record held at
	// the last full purge expires: when room frees up.
	nextFree atomic.Int64
	scopes   scopes
	shards   [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	records map[string]*memoryRecord
	// order holds the shard's records, in no order, each with the instant
	// it expires at: the sweep walks it from hand, round and round,
	// without reaching into the records (see sweepSlot).
	order []sweepSlot
	hand  int
	// inserts counts the shard's inserts, for sweep.
	inserts uint
}

// sweepSlot is a record in its shard's order, with the instant it expires
// at (its sweepEnd) kept beside it, so that the sweep reads a slice and
// not the records themselves, each in memory of its own.
type sweepSlot struct {
	end int64
	rec *memoryRecord
}

// add inserts rec under key. The caller holds sh.mu.
func (sh *memoryShard) add(key string, rec *memoryRecord) {
	rec.key = key
	rec.slot = int32(len(sh.order))
	sh.order = append(sh.order, sweepSlot{rec.sweepEnd(), rec})
	sh.records[key] = rec
}

// remove removes rec. The caller holds sh.mu.
func (sh *memoryShard) remove(rec *memoryRecord) {
	delete(sh.records, rec.key)
	last := len(sh.order) - 1
	moved := sh.order[last]
	sh.order[rec.slot] = moved
	moved.rec.slot = rec.slot
	sh.order[last] = sweepSlot{}
	sh.order = sh.order[:last]
}

// touch notes that rec's expiry may have changed. The caller holds sh.mu.
func (sh *memoryShard) touch(rec *memoryRecord) {
	sh.order[rec.slot].end = rec.sweepEnd()
}

type memoryRecord struct {
	// key is the record's key, whose first part is its scope (scopeOf).
	key         string
	fingerprint string
	status      Status
	// held is set on an in-progress claim taken by claimHeld: while its
	// holder works, its lease never runs out, as if renewed without end
	// (see claimHeld), and leaseEnd holds the lease itself.
	held bool
	// slot is the record's index in its shard's order: a shard never
	// holds 2^31 records, which would take hundreds of gigabytes.
	slot  int32
	token int64
	// leaseEnd and expiresAt are instants of the store's clock (now).
	leaseEnd  int64
	expiresAt int64
	response  []byte
	// size is what the record counts against the bounds.
	size int64
}

// heldLease returns the lease of a held claim.
func (r *memoryRecord) heldLease() time.Duration { return time.Duration(r.leaseEnd) }

// end returns when the record expires, reckoned at now.
func (r *memoryRecord) end(now int64) int64 {
	switch {
	case r.status == StatusCompleted:
		return r.expiresAt
	case r.held:
		return after(now, r.heldLease())
	}
	return r.leaseEnd
}

func (r *memoryRecord) expired(now int64) bool { return now >= r.end(now) }

// sweepEnd returns the instant from which r is expired (expired), however
// late: a held claim never is.
func (r *memoryRecord) sweepEnd() int64 {
	switch {
	case r.status == StatusCompleted:
		return r.expiresAt
	case r.held:
		return math.MaxInt64
	}
	return r.leaseEnd
}

func (r *memoryRecord) toRecord(key string, now int64) Record {
	return Record{
		Key:         key,
		Fingerprint: r.fingerprint,
		Status:      r.status,
		Token:       r.token,
		TTL:         max(between(now, r.end(now)), 0),
		Response:    r.response,
	}
}

// now returns the instant of the store's clock: nanoseconds since its
// epoch, on the monotonic clock (in a synctest bubble, on the bubble's).
func (s *MemoryStore) now() int64 { return int64(time.Since(s.epoch)) }

// after returns the instant d after t, saturated (a retention may be
// "forever").
func after(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	if d < 0 && t < math.MinInt64-int64(d) {
		return math.MinInt64
	}
	return t + int64(d)
}

// between returns the duration from instant t to instant u, saturated as
// time.Time.Sub's.
func between(t, u int64) time.Duration {
	d := u - t
	switch {
	case u >= t && d < 0:
		return math.MaxInt64
	case u < t && d > 0:
		return math.MinInt64
	}
	return time.Duration(d)
}

// WithMaxRecords bounds the number of records a MemoryStore holds; a claim
// of a new key while that many unexpired records are held fails with
// ErrStoreFull. Defaults to 100 000. Zero means no bound. For
// NewMemoryStore.
func WithMaxRecords(n int) Option {
	return newOption("WithMaxRecords", forMemory, func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%d is negative", n)
		}
		c.maxRecords = n
		return nil
	})
}

// WithMaxBytes bounds the bytes a MemoryStore holds: keys, fingerprints and
// responses, plus 128 bytes per record. A claim of a new key that does not
// fit fails with ErrStoreFull, a response that does not fit with
// ErrTooLarge. Defaults to 64 MiB. Zero means no bound. For NewMemoryStore.
func WithMaxBytes(n int64) Option {
	return newOption("WithMaxBytes", forMemory, func(c *config) error {
		if n < 0 {
			return fmt.Errorf("%d is negative", n)
		}
		c.maxBytes = n
		return nil
	})
}

// WithMaxScopeShare bounds the share of the store's records and bytes that
// one scope may hold: the keys of one tenant (WithScope) then cannot fill
// the store for the others. share is a fraction in (0, 1]; 1 means no bound
// of its own. Keys without a scope (no WithScope, Do's keys) count only
// against the store's bounds. Defaults to 0.25. For NewMemoryStore.
func WithMaxScopeShare(share float64) Option {
	return newOption("WithMaxScopeShare", forMemory, func(c *config) error {
		if !(share > 0 && share <= 1) {
			return fmt.Errorf("share %v is not in (0, 1]", share)
		}
		c.scopeShare = share
		return nil
	})
}

// NewMemoryStore returns an empty MemoryStore. It starts no goroutine. It
// returns an error naming the option if an option is invalid or does not
// apply to NewMemoryStore.
func NewMemoryStore(opts ...Option) (*MemoryStore, error) {
	cfg := config{maxRecords: 100_000, maxBytes: 64 << 20, scopeShare: 0.25}
	if err := applyOptions(ctorMemory, &cfg, opts); err != nil {
		return nil, err
	}
	s := &MemoryStore{
		maxRecords: int64(cfg.maxRecords),
		maxBytes:   cfg.maxBytes,
		seed:       maphash.MakeSeed(),
		epoch:      time.Now(),
	}
	if cfg.scopeShare < 1 {
		s.scopeRecords = int64(math.Ceil(float64(s.maxRecords) * cfg.scopeShare))
		s.scopeBytes = int64(math.Ceil(float64(s.maxBytes) * cfg.scopeShare))
	}
	s.lastFullPurge.Store(math.MinInt64 / 2)
	// Tokens are handed out by a counter, so that they are unique within the
	// store, from a random start, so that they differ across restarts.
	s.token.Store(rand.Int64())
	for i := range s.shards {
		s.shards[i].records = make(map[string]*memoryRecord)
	}
	return s, nil
}

var _ Store = (*MemoryStore)(nil)

// checkKey holds key to the rule of every Store.
func checkKey[K string | []byte](key K) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("idempotency: %w: empty key", ErrInvalid)
	case len(key) > maxStoreKey:
		return fmt.Errorf("idempotency: %w: key is %d bytes, at most %d are stored", ErrTooLarge, len(key), maxStoreKey)
	}
	return nil
}

func (s *MemoryStore) shard(key string) *memoryShard {
	return &s.shards[maphash.String(s.seed, key)&(memoryShards-1)]
}

// shardOf is shard for a key given as a string or as bytes: both hash
// alike.
func shardOf[K string | []byte](s *MemoryStore, key K) *memoryShard {
	var h uint64
	switch k := any(key).(type) {
	case string:
		h = maphash.String(s.seed, k)
	case []byte:
		h = maphash.Bytes(s.seed, k)
	}
	return &s.shards[h&(memoryShards-1)]
}

func (s *MemoryStore) nextToken() int64 {
	for {
		if t := s.token.Add(1); t != 0 {
			return t
		}
	}
}

// scopeOf returns the scope of a key written by ScopedKey: its first part,
// or "" for none (an empty scope, or a key that ScopedKey did not write). A
// hashed scope is returned as its hash, which names it as well.
func scopeOf(key string) string {
	if len(key) > 0 && key[0] == 'h' {
		if len(key) < 65 {
			return ""
		}
		for _, c := range []byte(key[1:65]) {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return ""
			}
		}
		return key[:65]
	}
	i := 0
	for i < len(key) && i < 4 && key[i] >= '0' && key[i] <= '9' {
		i++
	}
	if i == 0 || i == len(key) || key[i] != ':' {
		return ""
	}
	n, err := strconv.Atoi(key[:i])
	if err != nil || n == 0 || i+1+n > len(key) {
		return ""
	}
	return key[:i+1+n]
}

// scopes counts what each scope holds.
type scopes struct {
	mu sync.Mutex
	m  map[string]*scopeUsage
}

type scopeUsage struct {
	records, bytes int64
	// nextFree is when (Unix ns) the scope's earliest record expires, as
	// the last full purge found it.
	nextFree int64
}

// storeFullError is ErrStoreFull with the time until room frees up.
type storeFullError struct {
	after time.Duration
	scope bool
}

func (e *storeFullError) Error() string {
	what := "store full"
	if e.scope {
		what = "store full for this scope"
	}
	return fmt.Sprintf("idempotency: %s: room frees up in %v", what, e.after.Round(time.Millisecond))
}

func (e *storeFullError) Unwrap() error { return ErrStoreFull }

// RetryAfter returns how long until the earliest record expires: when a
// claim may find room.
func (e *storeFullError) RetryAfter() time.Duration { return e.after }

// Claim implements Store. It fails with ErrStoreFull (wrapped, with
// RetryAfter) when the key has no live record and the store, or the key's
// scope, holds as many records or bytes as it may. The Response of a
// returned Record is shared with the store and must not be modified.
func (s *MemoryStore) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (Claim, error) {
	c, _, _, err := claimChecked(ctx, s, key, fingerprint, lease, false)
	return c, err
}

// claimHeld is Claim for the middleware and Do, which hold the claim while
// their work runs in this process, and end it with Complete or Release (or
// unhold): instead of renewing its lease on a timer, they take a claim
// whose lease never runs out meanwhile. The store lives in the process,
// so a holder that died took the store with it; a renewed lease would
// last as long. Others see the claim with the whole lease left (TTL).
func (s *MemoryStore) claimHeld(ctx context.Context, key, fingerprint string, lease time.Duration) (Claim, error) {
	c, _, _, err := claimChecked(ctx, s, key, fingerprint, lease, true)
	return c, err
}

// claimHeldBytes is claimHeld for the middleware, which has the key and
// the fingerprint in a buffer of its own, key followed by fingerprint
// (key[:len(key)+len(fingerprint)] holds both): they become strings, in
// one allocation, only for a record the store keeps; a replay allocates
// nothing. A Record it returns has no Key. It returns the key and the
// fingerprint as strings with a claim it acquired, and "" with any other.
func (s *MemoryStore) claimHeldBytes(ctx context.Context, key, fingerprint []byte, lease time.Duration) (c Claim, skey, sfp string, err error) {
	return claimChecked(ctx, s, key, fingerprint, lease, true)
}

// claimChecked holds a claim's input to the rules of every Store, then
// claims.
func claimChecked[K string | []byte](ctx context.Context, s *MemoryStore, key, fingerprint K, lease time.Duration, hold bool) (Claim, string, string, error) {
	if err := ctx.Err(); err != nil {
		return Claim{}, "", "", err
	}
	if err := checkKey(key); err != nil {
		return Claim{}, "", "", err
	}
	if len(fingerprint) > maxStoreFingerprint {
		return Claim{}, "", "", fmt.Errorf("idempotency: %w: fingerprint is %d bytes, at most %d are stored", ErrTooLarge, len(fingerprint), maxStoreFingerprint)
	}
	if lease <= 0 {
		return Claim{}, "", "", fmt.Errorf("idempotency: %w: lease %v is not positive", ErrInvalid, lease)
	}
	for purged := false; ; purged = true {
		c, skey, sfp, full, scope := claimIn(s, key, fingerprint, lease, hold)
		if !full {
			return c, skey, sfp, nil
		}
		if purged || !s.purgeWhenFull() {
			return Claim{}, "", "", s.fullError(scope)
		}
	}
}

// unhold ends the hold of a claimHeld claim whose holder stopped working
// without completing or releasing it (the store refused both): its lease
// then runs from now, as a renewed lease would once renewals stop.
func (s *MemoryStore) unhold(key string, token int64) {
	sh := s.shard(key)
	now := s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if rec := held(sh, key, token, now); rec != nil && rec.held {
		rec.leaseEnd = after(now, rec.heldLease())
		rec.held = false
		sh.touch(rec)
	}
}

// fullError returns the error of a claim refused for lack of room in the
// store, or in scope.
func (s *MemoryStore) fullError(scope string) error {
	next := s.nextFree.Load()
	if scope != "" {
		s.scopes.mu.Lock()
		if u := s.scopes.m[scope]; u != nil {
			next = u.nextFree
		}
		s.scopes.mu.Unlock()
	}
	after := between(s.now(), next)
	if after <= 0 {
		after = time.Second
	}
	return &storeFullError{after: after, scope: scope != ""}
}

// ownStrings returns key and fingerprint as strings the store may keep:
// themselves if they are strings; if they are bytes, one new string of
// both, which key[:len(key)+len(fingerprint)] holds (claimHeldBytes).
func ownStrings[K string | []byte](key, fingerprint K) (string, string) {
	switch k := any(key).(type) {
	case string:
		return k, string(fingerprint)
	case []byte:
		both := string(k[:len(k)+len(fingerprint)])
		return both[:len(k)], both[len(k):]
	}
	panic("unreachable")
}

// claimIn returns the claim of key, with key and fingerprint as strings
// when it acquired it, or full (with the scope that is full, or "" for the
// store) when there is no room for a new record. A Record it returns has
// Key only if key is a string. The clock is read only when the claim
// needs it: a held claim of a new key does not, unless it sweeps; it is
// read before the shard's lock where it is known to be needed (a claim
// that is not held), else under it.
func claimIn[K string | []byte](s *MemoryStore, key, fingerprint K, lease time.Duration, hold bool) (c Claim, skey, sfp string, full bool, fullScope string) {
	sh := shardOf(s, key)
	var now int64
	if !hold {
		now = s.now()
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.records[string(key)]
	if ok && hold {
		now = s.now()
	}
	if ok && rec.status == StatusCompleted && rec.expired(now) {
		// Past its retention: forgotten.
		sh.remove(rec)
		s.forget(rec)
		ok = false
	}
	switch {
	case !ok:
		s.sweep(sh, now, !hold)
		skey, sfp = ownStrings(key, fingerprint)
		size := int64(len(skey)+len(sfp)) + recordOverhead
		if full, which := s.reserve(scopeOf(skey), size); full {
			return Claim{}, "", "", true, which
		}
		rec = &memoryRecord{fingerprint: sfp, size: size}
		sh.add(skey, rec)
	case rec.status == StatusInProgress && rec.expired(now) && rec.fingerprint == string(fingerprint):
		// Takeover of an abandoned claim: below, with a fresh token.
		skey, sfp = string(key), rec.fingerprint
	default:
		var k string
		if ks, isString := any(key).(string); isString {
			k = ks
		}
		return Claim{Record: rec.toRecord(k, now)}, "", "", false, ""
	}
	rec.status = StatusInProgress
	rec.token = s.nextToken()
	rec.held = hold
	if hold {
		rec.leaseEnd = int64(lease)
	} else {
		rec.leaseEnd = after(now, lease)
	}
	rec.expiresAt = 0
	rec.response = nil
	sh.touch(rec)
	return Claim{Acquired: true, Token: rec.token}, skey, sfp, false, ""
}

// reserve counts a new record of size bytes in, in the store and in scope,
// unless either is full: then it reports full, and which (the scope, or ""
// for the store). It is exact across shards: claims in other shards cannot
// push the counts over their bounds between the check and the count.
func (s *MemoryStore) reserve(scope string, size int64) (full bool, which string) {
	for {
		n := s.count.Load()
		if s.maxRecords > 0 && n >= s.maxRecords {
			return true, ""
		}
		if s.count.CompareAndSwap(n, n+1) {
			break
		}
	}
	if !s.grow(size) {
		s.count.Add(-1)
		return true, ""
	}
	if scope == "" || (s.scopeRecords == 0 && s.scopeBytes == 0) {
		return false, ""
	}
	s.scopes.mu.Lock()
	defer s.scopes.mu.Unlock()
	if s.scopes.m == nil {
		s.scopes.m = make(map[string]*scopeUsage)
	}
	u := s.scopes.m[scope]
	if u == nil {
		u = &scopeUsage{}
		s.scopes.m[scope] = u
	}
	if (s.scopeRecords > 0 && u.records >= s.scopeRecords) || (s.scopeBytes > 0 && u.bytes+size > s.scopeBytes) {
		s.count.Add(-1)
		s.bytes.Add(-size)
		if u.records == 0 {
			delete(s.scopes.m, scope)
		}
		return true, scope
	}
	u.records++
	u.bytes += size
	return false, ""
}

// grow counts n more bytes in, unless that exceeds the store's bound.
func (s *MemoryStore) grow(n int64) bool {
	if s.bytes.Add(n) > s.maxBytes && s.maxBytes > 0 && n > 0 {
		s.bytes.Add(-n)
		return false
	}
	return true
}

// growScope counts n more bytes in the scope of key, unless that exceeds
// its bound.
func (s *MemoryStore) growScope(key string, n int64) bool {
	if s.scopeRecords == 0 && s.scopeBytes == 0 {
		return true
	}
	scope := scopeOf(key)
	if scope == "" {
		return true
	}
	s.scopes.mu.Lock()
	defer s.scopes.mu.Unlock()
	u := s.scopes.m[scope]
	if u == nil {
		return true
	}
	if s.scopeBytes > 0 && n > 0 && u.bytes+n > s.scopeBytes {
		return false
	}
	u.bytes += n
	return true
}

// forget counts a removed record out.
func (s *MemoryStore) forget(rec *memoryRecord) {
	s.count.Add(-1)
	s.bytes.Add(-rec.size)
	if s.scopeRecords == 0 && s.scopeBytes == 0 {
		return
	}
	scope := scopeOf(rec.key)
	if scope == "" {
		return
	}
	s.scopes.mu.Lock()
	defer s.scopes.mu.Unlock()
	if u := s.scopes.m[scope]; u != nil {
		u.records--
		u.bytes -= rec.size
		if u.records <= 0 {
			delete(s.scopes.m, scope)
		}
	}
}

// sweep removes the expired records among up to sweepPerInsert of sh's
// per insert, sweepEvery inserts at a time, at now if haveNow, else at the
// clock's instant, read only if it sweeps. It walks sh.order from where
// the last sweep stopped, so that repeated sweeps reach every record. The
// caller holds sh.mu.
func (s *MemoryStore) sweep(sh *memoryShard, now int64, haveNow bool) {
	sh.inserts++
	if sh.inserts%sweepEvery != 0 || len(sh.order) == 0 {
		return
	}
	if !haveNow {
		now = s.now()
	}
	for range sweepEvery * sweepPerInsert {
		if sh.hand >= len(sh.order) {
			if len(sh.order) == 0 {
				return
			}
			sh.hand = 0
		}
		if slot := sh.order[sh.hand]; now >= slot.end {
			// The record itself decides: a change of its expiry that missed
			// touch must never remove a live record (its holder would see
			// its work run twice).
			if slot.rec.sweepEnd() > now {
				sh.order[sh.hand].end = slot.rec.sweepEnd()
				sh.hand++
				continue
			}
			// The last record moves into its place: looked at next.
			sh.remove(slot.rec)
			s.forget(slot.rec)
			continue
		}
		sh.hand++
	}
}

// held returns the record of key if it is in progress with token under a
// live lease. The caller holds the shard's lock.
func held(sh *memoryShard, key string, token int64, now int64) *memoryRecord {
	rec, ok := sh.records[key]
	if !ok || rec.status != StatusInProgress || rec.token != token || rec.expired(now) {
		return nil
	}
	return rec
}

// Renew implements Store.
func (s *MemoryStore) Renew(ctx context.Context, key string, token int64, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("idempotency: %w: lease %v is not positive", ErrInvalid, lease)
	}
	sh := s.shard(key)
	now := s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec := held(sh, key, token, now)
	if rec == nil {
		return ErrLeaseLost
	}
	if rec.held {
		rec.leaseEnd = int64(lease)
		return nil
	}
	rec.leaseEnd = after(now, lease)
	sh.touch(rec)
	return nil
}

// Complete implements Store. The store keeps its own copy of response. A
// response that does not fit the store's, or its scope's, bound on bytes
// any more is refused with an error wrapping ErrTooLarge, and the claim
// stays as it was.
func (s *MemoryStore) Complete(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error {
	return s.completeWith(ctx, key, token, response, retention, false)
}

// completeOwned is Complete for a response that the caller hands over: the
// store keeps it, without a copy, if it returns nil. The caller must not
// use response after that.
func (s *MemoryStore) completeOwned(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error {
	return s.completeWith(ctx, key, token, response, retention, true)
}

func (s *MemoryStore) completeWith(ctx context.Context, key string, token int64, response []byte, retention time.Duration, owned bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if retention <= 0 {
		return fmt.Errorf("idempotency: %w: retention %v is not positive", ErrInvalid, retention)
	}
	n := int64(len(response))
	stored := response
	if !owned {
		// Copied before the shard's lock is taken, so that the lock is
		// held for the record's work alone.
		stored = make([]byte, len(response))
		copy(stored, response)
	}
	for purged := false; ; purged = true {
		err := s.complete(key, token, stored, retention)
		if err != errNoRoom {
			return err
		}
		if purged || !s.purgeWhenFull() {
			return fmt.Errorf("idempotency: %w: a response of %d bytes does not fit the room the store has left", ErrTooLarge, n)
		}
	}
}

// errNoRoom is complete's report of a response that does not fit.
var errNoRoom = fmt.Errorf("no room")

// complete stores response, which the store keeps.
func (s *MemoryStore) complete(key string, token int64, response []byte, retention time.Duration) error {
	sh := s.shard(key)
	now := s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec := held(sh, key, token, now)
	if rec == nil {
		return ErrLeaseLost
	}
	n := int64(len(response)) - int64(len(rec.response))
	if !s.grow(n) {
		return errNoRoom
	}
	if !s.growScope(rec.key, n) {
		s.bytes.Add(-n)
		return errNoRoom
	}
	rec.size += n
	rec.status = StatusCompleted
	rec.held = false
	rec.leaseEnd = 0
	rec.expiresAt = after(now, retention)
	rec.response = response
	sh.touch(rec)
	return nil
}

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context, key string, token int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	sh := s.shard(key)
	now := s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec := held(sh, key, token, now)
	if rec == nil {
		return ErrLeaseLost
	}
	sh.remove(rec)
	s.forget(rec)
	return nil
}

// Get implements Store. An in-progress record whose lease has expired is
// still returned (with TTL 0) until it is taken over or purged; a completed
// record past its retention is not. The returned Record.Response is shared
// with the store and must not be modified.
func (s *MemoryStore) Get(ctx context.Context, key string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	if err := checkKey(key); err != nil {
		return Record{}, err
	}
	sh := s.shard(key)
	now := s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.records[key]
	if !ok || (rec.status == StatusCompleted && rec.expired(now)) {
		return Record{}, ErrNotFound
	}
	return rec.toRecord(key, now), nil
}

// len returns the number of records the store holds, expired ones that have
// not been removed yet included.
func (s *MemoryStore) len() int {
	return int(s.count.Load())
}

// Purge removes every expired record: completed records past their retention
// and in-progress records past their lease (abandoned claims). It returns how
// many it removed. It locks one shard at a time, so claims go on meanwhile.
func (s *MemoryStore) Purge(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return s.purge(), nil
}

// fullPurgeEvery bounds how often a claim refused by a full store purges the
// whole store, so that a flood of new keys against a full store costs one
// walk of the records per interval, not one per request.
const fullPurgeEvery = time.Second

// purgeWhenFull purges the store unless another full-store purge ran within
// fullPurgeEvery. It reports whether it purged.
func (s *MemoryStore) purgeWhenFull() bool {
	now := s.now()
	last := s.lastFullPurge.Load()
	if now-last < int64(fullPurgeEvery) || !s.lastFullPurge.CompareAndSwap(last, now) {
		return false
	}
	s.purge()
	return true
}

// purge removes the expired records, and notes when the earliest of those
// that remain expires, in the store and in each scope (when room frees up).
func (s *MemoryStore) purge() int {
	n := 0
	next := int64(math.MaxInt64)
	scoped := s.scopeRecords > 0 || s.scopeBytes > 0
	var scopeNext map[string]int64
	for i := range s.shards {
		sh := &s.shards[i]
		now := s.now()
		sh.mu.Lock()
		for _, r := range sh.records {
			if r.expired(now) {
				sh.remove(r)
				s.forget(r)
				n++
				continue
			}
			end := r.end(now)
			next = min(next, end)
			if !scoped {
				continue
			}
			if scope := scopeOf(r.key); scope != "" {
				if scopeNext == nil {
					scopeNext = make(map[string]int64)
				}
				if e, ok := scopeNext[scope]; !ok || end < e {
					scopeNext[scope] = end
				}
			}
		}
		sh.mu.Unlock()
	}
	s.nextFree.Store(next)
	if scopeNext != nil {
		s.scopes.mu.Lock()
		for scope, e := range scopeNext {
			if u := s.scopes.m[scope]; u != nil {
				u.nextFree = e
			}
		}
		s.scopes.mu.Unlock()
	}
	return n
}

// Run purges expired records every interval until ctx ends, then returns
// ctx's error. The store needs no Run to stay bounded; it is for
// applications that want memory handed back promptly after a burst. Run is
// the only goroutine the store ever uses, and the caller owns it.
func (s *MemoryStore) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return fmt.Errorf("idempotency: Run: interval %v is not positive", interval)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			s.purge()
		}
	}
}
