package idempotency

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// memoryShards is the number of independently locked parts of a MemoryStore.
// A power of two, so that a hash selects a shard with a mask.
const memoryShards = 64

// sweepPerInsert is how many other records a claim that inserts a record
// inspects, and removes if expired, in its shard: the lazy sweep that keeps
// memory proportional to the live records without a background goroutine.
const sweepPerInsert = 2

// MemoryStore is a Store that keeps its records in memory, for tests, single
// instances and as the fast path in front of nothing at all. It is safe for
// concurrent use; its records are split into shards with a lock each, and no
// lock is held while calling anything else. It keeps time on the process's
// own clock, which is the only one its callers share.
//
// Memory is bounded: with MaxRecords set, a claim of a new key fails with
// ErrStoreFull while the store holds that many records that have not expired.
// It never evicts a record that is still live. Expired records (completed ones
// past their retention, in-progress ones past their lease) are removed lazily
// as claims insert new records, in full by Purge, and by Run if the
// application starts it.
type MemoryStore struct {
	maxRecords int64
	seed       maphash.Seed
	count      atomic.Int64
	token      atomic.Int64
	// lastFullPurge is the time (Unix ns) of the last purge that a claim
	// refused by a full store ran.
	lastFullPurge atomic.Int64
	shards        [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	records map[string]*memoryRecord
}

type memoryRecord struct {
	fingerprint string
	status      Status
	token       int64
	leaseEnd    time.Time
	expiresAt   time.Time
	response    []byte
}

func (r *memoryRecord) expired(now time.Time) bool {
	if r.status == StatusCompleted {
		return !now.Before(r.expiresAt)
	}
	return !now.Before(r.leaseEnd)
}

func (r *memoryRecord) toRecord(key string, now time.Time) Record {
	end := r.leaseEnd
	if r.status == StatusCompleted {
		end = r.expiresAt
	}
	return Record{
		Key:         key,
		Fingerprint: r.fingerprint,
		Status:      r.status,
		Token:       r.token,
		TTL:         max(end.Sub(now), 0),
		Response:    r.response,
	}
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

// NewMemoryStore returns an empty MemoryStore. It starts no goroutine. It
// returns an error naming the option if an option is invalid or does not
// apply to NewMemoryStore.
func NewMemoryStore(opts ...Option) (*MemoryStore, error) {
	cfg := config{maxRecords: 100_000}
	if err := applyOptions(ctorMemory, &cfg, opts); err != nil {
		return nil, err
	}
	s := &MemoryStore{
		maxRecords: int64(cfg.maxRecords),
		seed:       maphash.MakeSeed(),
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
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("idempotency: %w: empty key", ErrInvalid)
	case len(key) > maxStoreKey:
		return fmt.Errorf("idempotency: %w: key is %d bytes, at most %d are stored", ErrTooLarge, len(key), maxStoreKey)
	}
	return nil
}

func (s *MemoryStore) shard(key string) *memoryShard {
	return &s.shards[maphash.String(s.seed, key)&(memoryShards-1)]
}

func (s *MemoryStore) nextToken() int64 {
	for {
		if t := s.token.Add(1); t != 0 {
			return t
		}
	}
}

// Claim implements Store. It fails with ErrStoreFull when the store is
// bounded, the key has no live record and the store holds MaxRecords live
// records. The Response of a returned Record is shared with the store and
// must not be modified.
func (s *MemoryStore) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (Claim, error) {
	if err := ctx.Err(); err != nil {
		return Claim{}, err
	}
	if err := checkKey(key); err != nil {
		return Claim{}, err
	}
	if len(fingerprint) > maxStoreFingerprint {
		return Claim{}, fmt.Errorf("idempotency: %w: fingerprint is %d bytes, at most %d are stored", ErrTooLarge, len(fingerprint), maxStoreFingerprint)
	}
	if lease <= 0 {
		return Claim{}, fmt.Errorf("idempotency: %w: lease %v is not positive", ErrInvalid, lease)
	}
	for purged := false; ; purged = true {
		c, full := s.claim(key, fingerprint, lease)
		if !full {
			return c, nil
		}
		if purged || !s.purgeWhenFull() {
			return Claim{}, ErrStoreFull
		}
	}
}

func (s *MemoryStore) claim(key, fingerprint string, lease time.Duration) (c Claim, full bool) {
	sh := s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.records[key]
	if ok && rec.status == StatusCompleted && rec.expired(now) {
		// Past its retention: forgotten.
		delete(sh.records, key)
		s.count.Add(-1)
		ok = false
	}
	switch {
	case !ok:
		s.sweep(sh, now, key)
		if !s.reserve() {
			return Claim{}, true
		}
		rec = &memoryRecord{fingerprint: fingerprint}
		sh.records[key] = rec
	case rec.status == StatusInProgress && !now.Before(rec.leaseEnd) && rec.fingerprint == fingerprint:
		// Takeover of an abandoned claim: below, with a fresh token.
	default:
		return Claim{Record: rec.toRecord(key, now)}, false
	}
	rec.status = StatusInProgress
	rec.token = s.nextToken()
	rec.leaseEnd = now.Add(lease)
	rec.expiresAt = time.Time{}
	rec.response = nil
	return Claim{Acquired: true, Token: rec.token}, false
}

// reserve counts a new record in, unless the store is full. It is exact
// across shards: claims in other shards cannot push the count over the
// bound between the check and the count.
func (s *MemoryStore) reserve() bool {
	for {
		n := s.count.Load()
		if s.maxRecords > 0 && n >= s.maxRecords {
			return false
		}
		if s.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// sweep removes up to sweepPerInsert expired records of sh other than keep.
// Map iteration starts at a random place, so repeated sweeps reach every
// record. The caller holds sh.mu.
func (s *MemoryStore) sweep(sh *memoryShard, now time.Time, keep string) {
	n := 0
	for k, r := range sh.records {
		if n == sweepPerInsert {
			return
		}
		n++
		if k != keep && r.expired(now) {
			delete(sh.records, k)
			s.count.Add(-1)
		}
	}
}

// held returns the record of key if it is in progress with token under a
// live lease. The caller holds the shard's lock.
func held(sh *memoryShard, key string, token int64, now time.Time) *memoryRecord {
	rec, ok := sh.records[key]
	if !ok || rec.status != StatusInProgress || rec.token != token || !now.Before(rec.leaseEnd) {
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
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec := held(sh, key, token, now)
	if rec == nil {
		return ErrLeaseLost
	}
	rec.leaseEnd = now.Add(lease)
	return nil
}

// Complete implements Store. The store keeps its own copy of response.
func (s *MemoryStore) Complete(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if retention <= 0 {
		return fmt.Errorf("idempotency: %w: retention %v is not positive", ErrInvalid, retention)
	}
	stored := make([]byte, len(response))
	copy(stored, response)
	sh := s.shard(key)
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec := held(sh, key, token, now)
	if rec == nil {
		return ErrLeaseLost
	}
	rec.status = StatusCompleted
	rec.leaseEnd = time.Time{}
	rec.expiresAt = now.Add(retention)
	rec.response = stored
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
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if held(sh, key, token, now) == nil {
		return ErrLeaseLost
	}
	delete(sh.records, key)
	s.count.Add(-1)
	return nil
}

// Get implements Store. An in-progress record whose lease has expired is
// still returned (with TTL 0) until it is taken over or
// purged; a completed record past its retention is not. The returned
// Record.Response is shared with the store and must not be modified.
func (s *MemoryStore) Get(ctx context.Context, key string) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, err
	}
	if err := checkKey(key); err != nil {
		return Record{}, err
	}
	sh := s.shard(key)
	now := time.Now()
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
	now := time.Now().UnixNano()
	last := s.lastFullPurge.Load()
	if now-last < int64(fullPurgeEvery) || !s.lastFullPurge.CompareAndSwap(last, now) {
		return false
	}
	s.purge()
	return true
}

func (s *MemoryStore) purge() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		now := time.Now()
		sh.mu.Lock()
		for k, r := range sh.records {
			if r.expired(now) {
				delete(sh.records, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	s.count.Add(int64(-n))
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
