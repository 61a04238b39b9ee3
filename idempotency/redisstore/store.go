package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/option"
)

// ErrCorrupt is returned (wrapped) when a record read from Redis is not one
// this store wrote (a foreign value under its prefix).
var ErrCorrupt = errors.New("redisstore: unexpected data")

// maxKeyLen is the longest key accepted, in bytes: the limit every
// idempotency.Store holds to.
const maxKeyLen = 1024

// maxFingerprintLen is the longest fingerprint accepted, in bytes.
const maxFingerprintLen = 255

// Store is an idempotency.Store on Redis (standalone, Sentinel or Cluster,
// through go-redis v9's UniversalClient). Every operation is one Lua script
// on one key; time is the Redis server's, and records expire by Redis key
// expiry. It is safe for concurrent use by any number of processes.
//
// Limits: keys of 1 to 1024 bytes, fingerprints of at most 255 bytes,
// responses of at most WithMaxResponseSize (4 MiB by default); more is
// refused with an error wrapping idempotency.ErrTooLarge.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	maxResp   int
	abandoned time.Duration

	claim, get, renew, complete, release, force *redis.Script
}

var _ idempotency.Store = (*Store)(nil)

// Option configures a Store. Options are made by the With functions of this
// package; New refuses, with an error naming it, an option that is invalid.
type Option interface{ setting() *option.Setting[Store] }

type optionFunc option.Setting[Store]

func (o *optionFunc) setting() *option.Setting[Store] { return (*option.Setting[Store])(o) }

func newOption(name string, set func(*Store) error) Option {
	return &optionFunc{Name: name, Set: set}
}

// WithPrefix sets the prefix of every Redis key the store writes, so that
// several stores or applications share one Redis. Defaults to
// "steadfast:idem:". On Redis Cluster a prefix with a hash tag ({...})
// would put every record in one slot: do not use one.
func WithPrefix(p string) Option {
	return newOption("WithPrefix", func(s *Store) error {
		s.prefix = p
		return nil
	})
}

// WithMaxResponseSize sets the largest response Complete stores; a larger
// one is refused with an error wrapping idempotency.ErrTooLarge. Defaults to
// 4 MiB.
func WithMaxResponseSize(n int) Option {
	return newOption("WithMaxResponseSize", func(s *Store) error {
		if n <= 0 {
			return fmt.Errorf("%d is not positive", n)
		}
		s.maxResp = n
		return nil
	})
}

// WithAbandonedRetention sets how long a claim whose lease expired is kept
// (Redis expires the key at the end of lease plus this). Until then only a
// claimer with the same fingerprint takes it over, and a different one gets
// the record (a mismatch). Defaults to 24h.
func WithAbandonedRetention(d time.Duration) Option {
	return newOption("WithAbandonedRetention", func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("%v is not positive", d)
		}
		s.abandoned = d
		return nil
	})
}

// New returns a Store on rdb. It does not contact Redis. It returns an error
// naming the option at fault, or for a nil client.
func New(rdb redis.UniversalClient, opts ...Option) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("redisstore: New: nil client")
	}
	s := &Store{
		rdb:       rdb,
		prefix:    "steadfast:idem:",
		maxResp:   4 << 20,
		abandoned: 24 * time.Hour,
		claim:     redis.NewScript(claimLua),
		get:       redis.NewScript(getLua),
		renew:     redis.NewScript(renewLua),
		complete:  redis.NewScript(completeLua),
		release:   redis.NewScript(releaseLua),
		force:     redis.NewScript(forceReleaseLua),
	}
	err := option.Apply("redisstore", "New", s, len(opts), func(i int) *option.Setting[Store] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("redisstore: %w: empty key", idempotency.ErrInvalid)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("redisstore: %w: key is %d bytes, at most %d are accepted", idempotency.ErrTooLarge, len(key), maxKeyLen)
	}
	return nil
}

// millis converts d to whole milliseconds, rounding up so that a positive
// duration never becomes zero.
func millis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	// Lua numbers are doubles: keep sums of times exact.
	if ms > 1<<50 {
		ms = 1 << 50
	}
	return ms
}

func newToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// Claim implements idempotency.Store.
func (s *Store) Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.Claim, error) {
	if err := s.checkKey(key); err != nil {
		return idempotency.Claim{}, err
	}
	if len(fingerprint) > maxFingerprintLen {
		return idempotency.Claim{}, fmt.Errorf("redisstore: %w: fingerprint is %d bytes, at most %d are accepted", idempotency.ErrTooLarge, len(fingerprint), maxFingerprintLen)
	}
	if lease <= 0 {
		return idempotency.Claim{}, fmt.Errorf("redisstore: %w: lease %v is not positive", idempotency.ErrInvalid, lease)
	}
	token := newToken()
	res, err := s.claim.Run(ctx, s.rdb, []string{s.prefix + key},
		fingerprint, strconv.FormatInt(token, 10), millis(lease), millis(s.abandoned)).Slice()
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	if len(res) == 1 && res[0] == int64(1) {
		return idempotency.Claim{Acquired: true, Token: token}, nil
	}
	if len(res) != 6 {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w: reply of %d elements", ErrCorrupt, len(res))
	}
	rec, err := parseRecord(key, res[1:])
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	return idempotency.Claim{Record: rec}, nil
}

// parseRecord reads the reply f, s, t, ttl, r of a script.
func parseRecord(key string, f []any) (idempotency.Record, error) {
	str := func(i int) (string, bool) {
		v, ok := f[i].(string)
		return v, ok
	}
	fp, ok1 := str(0)
	st, ok2 := str(1)
	tok, ok3 := str(2)
	ttl, ok4 := str(3)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return idempotency.Record{}, fmt.Errorf("%w: record %q lacks fields", ErrCorrupt, key)
	}
	token, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("%w: record %q token %q", ErrCorrupt, key, tok)
	}
	ms, err := strconv.ParseInt(ttl, 10, 64)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("%w: record %q time %q", ErrCorrupt, key, ttl)
	}
	rec := idempotency.Record{Key: key, Fingerprint: fp, Token: token, TTL: time.Duration(max(ms, 0)) * time.Millisecond}
	switch st {
	case "1":
		rec.Status = idempotency.StatusInProgress
	case "2":
		r, _ := str(4)
		rec.Status = idempotency.StatusCompleted
		rec.Response = []byte(r)
	default:
		return idempotency.Record{}, fmt.Errorf("%w: record %q status %q", ErrCorrupt, key, st)
	}
	return rec, nil
}

// Get implements idempotency.Store: one script that reads the record and
// what is left of its lease or retention on the server's clock. Records
// expire by Redis key expiry, so an expired record is not found.
func (s *Store) Get(ctx context.Context, key string) (idempotency.Record, error) {
	if err := s.checkKey(key); err != nil {
		return idempotency.Record{}, err
	}
	f, err := s.get.Run(ctx, s.rdb, []string{s.prefix + key}).Slice()
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	if len(f) == 0 {
		return idempotency.Record{}, idempotency.ErrNotFound
	}
	if len(f) != 5 {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w: reply of %d elements", ErrCorrupt, len(f))
	}
	rec, err := parseRecord(key, f)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	return rec, nil
}

func (s *Store) runHeld(ctx context.Context, op string, script *redis.Script, key string, args ...any) error {
	n, err := script.Run(ctx, s.rdb, []string{s.prefix + key}, args...).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: %s: %w", op, err)
	}
	if n != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Renew implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token.
func (s *Store) Renew(ctx context.Context, key string, token int64, lease time.Duration) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("redisstore: %w: lease %v is not positive", idempotency.ErrInvalid, lease)
	}
	return s.runHeld(ctx, "renew", s.renew, key, strconv.FormatInt(token, 10), millis(lease), millis(s.abandoned))
}

// Complete implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token and an error wrapping
// idempotency.ErrTooLarge for a response over WithMaxResponseSize; then
// nothing is stored.
func (s *Store) Complete(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if len(response) > s.maxResp {
		return fmt.Errorf("redisstore: %w: response is %d bytes, at most %d are stored", idempotency.ErrTooLarge, len(response), s.maxResp)
	}
	if retention <= 0 {
		return fmt.Errorf("redisstore: %w: retention %v is not positive", idempotency.ErrInvalid, retention)
	}
	return s.runHeld(ctx, "complete", s.complete, key, strconv.FormatInt(token, 10), response, millis(retention))
}

// Release implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token.
func (s *Store) Release(ctx context.Context, key string, token int64) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	return s.runHeld(ctx, "release", s.release, key, strconv.FormatInt(token, 10))
}

// ForceRelease deletes the in-progress claim of key whatever its token, for
// operators releasing a stuck claim; the old holder's Complete then fails
// with idempotency.ErrLeaseLost. It returns idempotency.ErrNotFound when key
// has no claim in progress.
func (s *Store) ForceRelease(ctx context.Context, key string) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	err := s.runHeld(ctx, "force release", s.force, key)
	if errors.Is(err, idempotency.ErrLeaseLost) {
		return idempotency.ErrNotFound
	}
	return err
}
