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
)

var (
	// ErrTooLarge is returned (wrapped, with the sizes) when a key or a
	// response is larger than the store accepts. Nothing is written.
	ErrTooLarge = errors.New("redisstore: value too large")
	// ErrInvalid is returned (wrapped) for an empty key or a non-positive
	// lease or retention.
	ErrInvalid = errors.New("redisstore: invalid argument")
	// ErrCorrupt is returned (wrapped) when a record read from Redis is not
	// one this store wrote (a foreign value under its prefix).
	ErrCorrupt = errors.New("redisstore: unexpected data")
)

// Defaults of the options.
const (
	// DefaultPrefix is the default of WithPrefix.
	DefaultPrefix = "steadfast:idem:"
	// DefaultMaxResponseSize is the default of WithMaxResponseSize.
	DefaultMaxResponseSize = 4 << 20
	// DefaultAbandonedRetention is the default of WithAbandonedRetention.
	DefaultAbandonedRetention = 24 * time.Hour
	// MaxKeyLen is the longest key accepted, in bytes.
	MaxKeyLen = 4096
)

// Store is an idempotency.Store on Redis (standalone, Sentinel or Cluster,
// through go-redis v9's UniversalClient). Every operation is one Lua script
// or one command on one key; time is the Redis server's, and records expire
// by Redis key expiry. It is safe for concurrent use by any number of
// processes.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	maxResp   int
	abandoned time.Duration

	claim, renew, complete, release, force *redis.Script
}

var _ idempotency.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store) error

// WithPrefix sets the prefix of every Redis key the store writes, so that
// several stores or applications share one Redis. Defaults to DefaultPrefix
// ("steadfast:idem:"). On Redis Cluster a prefix with a hash tag ({...})
// would put every record in one slot: do not use one.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		s.prefix = p
		return nil
	}
}

// WithMaxResponseSize sets the largest response Complete stores; a larger
// one is refused with ErrTooLarge. Defaults to DefaultMaxResponseSize (4 MiB).
func WithMaxResponseSize(n int) Option {
	return func(s *Store) error {
		if n <= 0 {
			return fmt.Errorf("redisstore: WithMaxResponseSize(%d): must be positive", n)
		}
		s.maxResp = n
		return nil
	}
}

// WithAbandonedRetention sets how long a claim whose lease expired is kept
// (Redis expires the key at the end of lease plus this). Until then only a
// claimer with the same fingerprint takes it over, and a different one gets
// the record (a mismatch). Defaults to DefaultAbandonedRetention (24 h).
func WithAbandonedRetention(d time.Duration) Option {
	return func(s *Store) error {
		if d <= 0 {
			return fmt.Errorf("redisstore: WithAbandonedRetention(%v): must be positive", d)
		}
		s.abandoned = d
		return nil
	}
}

// New returns a Store on rdb. It does not contact Redis. It returns an error
// naming the bad option.
func New(rdb redis.UniversalClient, opts ...Option) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("redisstore: New: nil client")
	}
	s := &Store{
		rdb:       rdb,
		prefix:    DefaultPrefix,
		maxResp:   DefaultMaxResponseSize,
		abandoned: DefaultAbandonedRetention,
		claim:     redis.NewScript(claimLua),
		renew:     redis.NewScript(renewLua),
		complete:  redis.NewScript(completeLua),
		release:   redis.NewScript(releaseLua),
		force:     redis.NewScript(forceReleaseLua),
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes, at most %d are accepted", ErrTooLarge, len(key), MaxKeyLen)
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
	if lease <= 0 {
		return idempotency.Claim{}, fmt.Errorf("%w: lease %v is not positive", ErrInvalid, lease)
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
	if len(res) != 7 {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w: reply of %d elements", ErrCorrupt, len(res))
	}
	f := make([]any, 6)
	copy(f, res[1:])
	rec, err := parseRecord(key, f)
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	return idempotency.Claim{Record: rec}, nil
}

// parseRecord reads the fields f, s, t, l, e, r of a record.
func parseRecord(key string, f []any) (idempotency.Record, error) {
	str := func(i int) (string, bool) {
		v, ok := f[i].(string)
		return v, ok
	}
	fp, ok1 := str(0)
	st, ok2 := str(1)
	tok, ok3 := str(2)
	if !ok1 || !ok2 || !ok3 {
		return idempotency.Record{}, fmt.Errorf("%w: record %q lacks fields", ErrCorrupt, key)
	}
	token, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("%w: record %q token %q", ErrCorrupt, key, tok)
	}
	num := func(i int) (int64, error) {
		v, _ := str(i)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: record %q field %d = %q", ErrCorrupt, key, i, v)
		}
		return n, nil
	}
	rec := idempotency.Record{Key: key, Fingerprint: fp, Token: token}
	switch st {
	case "1":
		l, err := num(3)
		if err != nil {
			return idempotency.Record{}, err
		}
		rec.Status = idempotency.StatusInProgress
		rec.LeaseExpiresAt = time.UnixMilli(l)
	case "2":
		e, err := num(4)
		if err != nil {
			return idempotency.Record{}, err
		}
		r, _ := str(5)
		rec.Status = idempotency.StatusCompleted
		rec.ExpiresAt = time.UnixMilli(e)
		rec.Response = []byte(r)
	default:
		return idempotency.Record{}, fmt.Errorf("%w: record %q status %q", ErrCorrupt, key, st)
	}
	return rec, nil
}

// Get implements idempotency.Store with one HMGET.
func (s *Store) Get(ctx context.Context, key string) (idempotency.Record, error) {
	if err := s.checkKey(key); err != nil {
		return idempotency.Record{}, err
	}
	f, err := s.rdb.HMGet(ctx, s.prefix+key, "f", "s", "t", "l", "e", "r").Result()
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	if f[1] == nil {
		return idempotency.Record{}, idempotency.ErrNotFound
	}
	rec, err := parseRecord(key, f)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	return rec, nil
}

// Lookup returns the record of key for operators; records expire by Redis
// key expiry, so it is Get.
func (s *Store) Lookup(ctx context.Context, key string) (idempotency.Record, error) {
	return s.Get(ctx, key)
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
		return fmt.Errorf("%w: lease %v is not positive", ErrInvalid, lease)
	}
	return s.runHeld(ctx, "renew", s.renew, key, strconv.FormatInt(token, 10), millis(lease), millis(s.abandoned))
}

// Complete implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token and ErrTooLarge for a response over
// WithMaxResponseSize; then nothing is stored.
func (s *Store) Complete(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if len(response) > s.maxResp {
		return fmt.Errorf("%w: response is %d bytes, at most %d are stored", ErrTooLarge, len(response), s.maxResp)
	}
	if retention <= 0 {
		return fmt.Errorf("%w: retention %v is not positive", ErrInvalid, retention)
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
