package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
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
// through go-redis v9's UniversalClient). Every operation is one round trip
// on one key: a claim is one SET NX GET (Redis 7.0 or later; a Lua script
// on older servers), a read is one GET, and the writes guarded by a token
// are one Lua script each. Time is the Redis server's, and records expire
// by Redis key expiry. It is safe for concurrent use by any number of
// processes.
//
// Limits: keys of 1 to 1024 bytes, fingerprints of at most 255 bytes,
// responses of at most WithMaxResponseSize (4 MiB by default); more is
// refused with an error wrapping idempotency.ErrTooLarge.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	maxResp   int
	abandoned time.Duration

	// noSetGet is set once the server refused SET NX GET (Redis before
	// 7.0): claims then run claimLua.
	noSetGet atomic.Bool

	// clock estimates the server's clock, for the TTL of a completed
	// record read by a claim.
	clock serverClock

	claim, renew, complete, release, force *redis.Script

	legacyClaim, legacyGet, legacyRenew, legacyComplete, legacyRelease, legacyForce *redis.Script
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
		renew:     redis.NewScript(renewLua),
		complete:  redis.NewScript(completeLua),
		release:   redis.NewScript(releaseLua),
		force:     redis.NewScript(forceReleaseLua),

		legacyClaim:    redis.NewScript(legacyClaimLua),
		legacyGet:      redis.NewScript(legacyGetLua),
		legacyRenew:    redis.NewScript(legacyRenewLua),
		legacyComplete: redis.NewScript(legacyCompleteLua),
		legacyRelease:  redis.NewScript(legacyReleaseLua),
		legacyForce:    redis.NewScript(legacyForceReleaseLua),
	}
	s.clock.init()
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
	return min(ms, maxMillis)
}

// maxMillis bounds every duration the store sends, in milliseconds.
const maxMillis = 1 << 50

func newToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// Claim implements idempotency.Store: one round trip and one command,
// whether it takes a new key or returns a completed record: SET NX GET with
// the new claim (see claimSetGet). Only when it finds another holder's
// claim in progress does it run a script, which reads the lease left and
// takes the claim over if its lease ran out, deciding again on the server.
// The decisions are SET NX GET's and the script's alone; a record changed
// between the two (by another client's write, or its expiry) is reported
// as the script found it.
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
	c := s.newClaimCall(key, fingerprint, lease, newToken())
	return s.claimWith(ctx, &c)
}

func (s *Store) newClaimCall(key, fingerprint string, lease time.Duration, token int64) claimCall {
	ab := millis(s.abandoned)
	return claimCall{
		key:         key,
		rkey:        s.prefix + key,
		fingerprint: fingerprint,
		token:       token,
		value:       heldRecord(token, ab, fingerprint),
		px:          millis(lease) + ab,
	}
}

func (s *Store) claimWith(ctx context.Context, c *claimCall) (idempotency.Claim, error) {
	if !s.noSetGet.Load() {
		if cl, err, done := s.claimSetGet(ctx, c); done {
			return cl, err
		}
	}
	return s.claimScript(ctx, c, true)
}

// claimCall is one Claim's arguments, as sent.
type claimCall struct {
	key, rkey, fingerprint string
	token                  int64
	value                  []byte
	px                     int64
}

// outcome returns the claim's result for the record rec it found.
func (c *claimCall) outcome(rec idempotency.Record) idempotency.Claim {
	if rec.Status == idempotency.StatusInProgress && rec.Token == c.token {
		// The record is this claim's own: the client sent the command
		// again after a network error, and the first one had run.
		return idempotency.Claim{Acquired: true, Token: c.token}
	}
	return idempotency.Claim{Record: rec}
}

// claimSetGet claims with SET NX GET alone: a free key is taken and the
// record under a taken key returned by the one command. A completed record
// carries its expiry, and its TTL is reckoned on serverClock, whose reading
// of the server's clock is sent beside the command once a second; a claim
// in progress of another holder is passed to the script, which reads what
// is left of its lease and takes it over if it ran out (a second round
// trip, while that claim's work is under way). done is false when the
// server refused the command (Redis before 7.0); the claim is then the
// script's to make.
func (s *Store) claimSetGet(ctx context.Context, c *claimCall) (_ idempotency.Claim, _ error, done bool) {
	var (
		v   string
		err error
	)
	if sent := time.Now(); s.clock.fresh(sent) {
		v, err = s.rdb.Do(ctx, "set", c.rkey, c.value, "px", c.px, "nx", "get").Text()
	} else {
		p := s.rdb.Pipeline()
		// The clock is read by a script on the claim's key, so that on
		// Redis Cluster it is the clock of the node that keeps the key.
		now := p.Eval(ctx, timeLua, []string{c.rkey})
		set := p.Do(ctx, "set", c.rkey, c.value, "px", c.px, "nx", "get")
		_, _ = p.Exec(ctx)
		if t, err := now.StringSlice(); err == nil {
			s.clock.observe(sent, t)
		}
		v, err = set.Text()
	}
	switch {
	case err == redis.Nil:
		return idempotency.Claim{Acquired: true, Token: c.token}, nil, true
	case isWrongType(err):
		cl, err := s.claimLegacy(ctx, c)
		return cl, err, true
	case err != nil && strings.HasPrefix(err.Error(), "ERR syntax error"):
		s.noSetGet.Store(true)
		return idempotency.Claim{}, nil, false
	case err != nil:
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err), true
	}
	rec, expiry, err := decodeValue(c.key, v)
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err), true
	}
	switch {
	case rec.Status == idempotency.StatusInProgress && rec.Token == c.token:
		// The record is this claim's own: the client sent the command
		// again after a network error, and the first one had run.
		return idempotency.Claim{Acquired: true, Token: c.token}, nil, true
	case rec.Status == idempotency.StatusInProgress:
		cl, err := s.claimScript(ctx, c, true)
		return cl, err, true
	}
	if ttl, ok := s.clock.left(expiry, time.Now()); ok {
		rec.TTL = ttl
		return idempotency.Claim{Record: rec}, nil, true
	}
	// Completed by an earlier version of the store (expiry 0), or the
	// server's clock could not be read: the key's expiry is the record's.
	pttl, err := s.rdb.Do(ctx, "pttl", c.rkey).Int64()
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err), true
	}
	if rec, err = parseValue(c.key, v, pttl); err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err), true
	}
	return idempotency.Claim{Record: rec}, nil, true
}

// timeLua returns the server's TIME; KEYS[1] routes it to the node of a
// key on Redis Cluster.
const timeLua = `return redis.call('TIME')`

// serverClock estimates the Redis server's clock between readings of it:
// the last reading plus the time elapsed since, on this process's
// monotonic clock. The reading is taken as of when its command was sent,
// before the server read its clock, so the estimate is never behind the
// server (by more than the two clocks' drift over a second) and a TTL
// reckoned from it never longer than what is left (to the millisecond the
// record's expiry is written in). It serves only the TTL
// of completed records, which carry their expiry on the server's clock;
// every expiry is set and enforced by Redis. On Redis Cluster it is the
// clock of the node read last, which the others' agree with to the
// precision of their time synchronisation.
type serverClock struct {
	base time.Time // this process's monotonic origin
	// offset is the server's Unix time in microseconds minus the
	// microseconds since base, at the last reading; at is when that
	// reading was sent, in microseconds since base, or -1 before the
	// first. offset is stored before at, and loaded after it.
	offset, at atomic.Int64
}

// clockPeriod is how often the clock is read again.
const clockPeriod = time.Second

func (k *serverClock) init() {
	k.base = time.Now()
	k.at.Store(-1)
}

// fresh reports whether the last reading is recent enough at now.
func (k *serverClock) fresh(now time.Time) bool {
	at := k.at.Load()
	return at >= 0 && now.Sub(k.base).Microseconds()-at < clockPeriod.Microseconds()
}

// observe records the reply t of TIME (seconds and microseconds), sent at
// sent; a malformed reply is ignored.
func (k *serverClock) observe(sent time.Time, t []string) {
	if len(t) != 2 {
		return
	}
	sec, err1 := strconv.ParseInt(t[0], 10, 64)
	us, err2 := strconv.ParseInt(t[1], 10, 64)
	if err1 != nil || err2 != nil || sec < 0 || sec > maxMillis/1000 || us < 0 || us >= 1e6 {
		return
	}
	local := sent.Sub(k.base).Microseconds()
	k.offset.Store(sec*1e6 + us - local)
	k.at.Store(local)
}

// left returns what is left at now, on the estimated server clock, until
// expiry (Unix milliseconds on the server's clock): at least a millisecond,
// since the record was just read (Redis had not expired it yet). ok is
// false when expiry is 0 (unknown) or out of range, or the clock was never
// read.
func (k *serverClock) left(expiry uint64, now time.Time) (_ time.Duration, ok bool) {
	if expiry == 0 || expiry > 2*maxMillis || k.at.Load() < 0 {
		return 0, false
	}
	est := now.Sub(k.base).Microseconds() + k.offset.Load()
	return max(time.Duration(int64(expiry)*1000-est)*time.Microsecond, time.Millisecond), true
}

// claimScript claims with claimLua (legacy: whether a legacy record may be
// under the key).
func (s *Store) claimScript(ctx context.Context, c *claimCall, legacy bool) (idempotency.Claim, error) {
	res, err := s.claim.Run(ctx, s.rdb, []string{c.rkey}, c.value, c.px, c.fingerprint).Result()
	if legacy && isWrongType(err) {
		return s.claimLegacy(ctx, c)
	}
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	if n, ok := res.(int64); ok && n == 1 {
		return idempotency.Claim{Acquired: true, Token: c.token}, nil
	}
	f, _ := res.([]any)
	if len(f) != 2 {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w: unexpected reply", ErrCorrupt)
	}
	v, ok1 := f[0].(string)
	pttl, ok2 := f[1].(int64)
	if !ok1 || !ok2 {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w: unexpected reply", ErrCorrupt)
	}
	rec, err := parseValue(c.key, v, pttl)
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	return c.outcome(rec), nil
}

// claimLegacy claims a key that may hold a record of the earlier format.
func (s *Store) claimLegacy(ctx context.Context, c *claimCall) (idempotency.Claim, error) {
	res, err := s.legacyClaim.Run(ctx, s.rdb, []string{c.rkey}, c.value, c.px, c.fingerprint).Slice()
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	switch {
	case len(res) == 1 && res[0] == int64(1):
		return idempotency.Claim{Acquired: true, Token: c.token}, nil
	case len(res) == 1 && res[0] == int64(2):
		return s.claimScript(ctx, c, false)
	case len(res) != 6:
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w: reply of %d elements", ErrCorrupt, len(res))
	}
	rec, err := parseLegacy(c.key, res[1:])
	if err != nil {
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	return idempotency.Claim{Record: rec}, nil
}

// isWrongType reports whether err is Redis's answer to an operation on a
// key of another type: a record of the earlier format (a hash).
func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), "WRONGTYPE")
}

// parseLegacy reads the reply f, s, t, ttl, r of a legacy script.
func parseLegacy(key string, f []any) (idempotency.Record, error) {
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

// Get implements idempotency.Store: one GET and the key's PTTL, in one
// round trip. Records expire by Redis key expiry, so an expired record is
// not found.
func (s *Store) Get(ctx context.Context, key string) (idempotency.Record, error) {
	if err := s.checkKey(key); err != nil {
		return idempotency.Record{}, err
	}
	rkey := s.prefix + key
	var boxed any = rkey // boxed once for both commands
	p := s.rdb.Pipeline()
	ttl := p.Do(ctx, "pttl", boxed)
	get := p.Do(ctx, "get", boxed)
	_, _ = p.Exec(ctx)
	v, err := get.Text()
	switch {
	case err == redis.Nil:
		return idempotency.Record{}, idempotency.ErrNotFound
	case isWrongType(err):
		return s.getLegacy(ctx, key, rkey)
	case err != nil:
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	pttl, err := ttl.Int64()
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	rec, err := parseValue(key, v, pttl)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	return rec, nil
}

func (s *Store) getLegacy(ctx context.Context, key, rkey string) (idempotency.Record, error) {
	f, err := s.legacyGet.Run(ctx, s.rdb, []string{rkey}).Slice()
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	if len(f) == 0 {
		return idempotency.Record{}, idempotency.ErrNotFound
	}
	if len(f) != 5 {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w: reply of %d elements", ErrCorrupt, len(f))
	}
	rec, err := parseLegacy(key, f)
	if err != nil {
		return idempotency.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	return rec, nil
}

// runHeld runs script on rkey with args, or legacy with legacyArgs when the
// key holds a record of the earlier format; both return 1 when the key was
// held as they require, else 0 (ErrLeaseLost).
func (s *Store) runHeld(ctx context.Context, op string, script, legacy *redis.Script, rkey string, args []any, legacyArgs func() []any) error {
	keys := []string{rkey}
	n, err := script.Run(ctx, s.rdb, keys, args...).Int64()
	if isWrongType(err) {
		n, err = legacy.Run(ctx, s.rdb, keys, legacyArgs()...).Int64()
	}
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
	return s.runHeld(ctx, "renew", s.renew, s.legacyRenew, s.prefix+key,
		[]any{heldPrefix(token), millis(lease)},
		func() []any { return []any{strconv.FormatInt(token, 10), millis(lease), millis(s.abandoned)} })
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
	return s.runHeld(ctx, "complete", s.complete, s.legacyComplete, s.prefix+key,
		[]any{heldPrefix(token), response, millis(retention)},
		func() []any { return []any{strconv.FormatInt(token, 10), response, millis(retention)} })
}

// Release implements idempotency.Store. It returns idempotency.ErrLeaseLost
// when key is not held with token.
func (s *Store) Release(ctx context.Context, key string, token int64) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	return s.runHeld(ctx, "release", s.release, s.legacyRelease, s.prefix+key,
		[]any{heldPrefix(token)},
		func() []any { return []any{strconv.FormatInt(token, 10)} })
}

// ForceRelease deletes the in-progress claim of key whatever its token, for
// operators releasing a stuck claim; the old holder's Complete then fails
// with idempotency.ErrLeaseLost. It returns idempotency.ErrNotFound when key
// has no claim in progress.
func (s *Store) ForceRelease(ctx context.Context, key string) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	err := s.runHeld(ctx, "force release", s.force, s.legacyForce, s.prefix+key, nil, func() []any { return nil })
	if errors.Is(err, idempotency.ErrLeaseLost) {
		return idempotency.ErrNotFound
	}
	return err
}
