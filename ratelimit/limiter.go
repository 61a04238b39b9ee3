package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
)

// maxKeyBytes bounds the length of a key.
const maxKeyBytes = 512

const numShards = 32

// sweepPause is how long a full limiter whose sweep freed nothing refuses new
// keys before it sweeps again, so that a flood of new keys costs no more than
// one sweep per pause.
const sweepPause = 100 * time.Millisecond

var errNilLimiter = errors.New("ratelimit: the *Limiter is nil")

// Limiter holds a quota per key (an account, a host, an endpoint): one or
// more windows (WithLimit), narrowed by what providers announce (Observe,
// Transport), kept in this process on golang.org/x/time/rate or shared by the
// replicas of a service through a Store (WithStore). Make one with New; it is
// safe for concurrent use.
//
// Keys are at most 512 bytes long; the limiter holds the state of at most
// WithMaxKeys keys (10,000 by default) and forgets idle ones.
//
// Metrics (OpenTelemetry, see WithMeterProvider): steadfast.ratelimit.waits (requests
// that waited), steadfast.ratelimit.wait.duration (how long, in seconds),
// steadfast.ratelimit.rejections (requests refused with a *LimitedError) and
// steadfast.ratelimit.rate (a key's current rate: its shortest window's, or lower when
// a provider announced less, 0 while it is paused), each with the attribute
// ratelimit.key, whose values are bounded: the first 100 keys a limiter sees
// have their own, the others share "_other" (the rate is recorded for the
// first 100 only).
type Limiter struct {
	cfg    config
	limits []Limit
	single bool // one window: the fast path of Wait applies to local keys
	seed   maphash.Seed
	shards [numShards]shard
	n      atomic.Int64 // keys held
	// noSweepUntil (Unix nanoseconds): a sweep that freed nothing makes new
	// keys fail fast until then.
	noSweepUntil atomic.Int64

	sh  *shared // nil: the quota is local
	m   *metrics
	log *slog.Logger
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*entry
}

// entry is one key's state.
type entry struct {
	key   string
	attrs metric.MeasurementOption
	named bool // has its own metric attribute value

	// simple: the quota is local, it has one window and no announced
	// limit in force, so Wait may take a token from fast without mu.
	simple atomic.Bool
	fast   atomic.Pointer[rate.Limiter] // b.wins[0], replaced by a pause
	// dead: the entry was forgotten; whoever sees it looks the key up
	// again (the token it may have taken here is lost, never granted).
	dead atomic.Bool

	mu      sync.Mutex
	b       *bucket // the local quota; with a Store, the local share or nil
	waiters int
	// wake is closed (and forgotten) when what a provider announced
	// changes the key's quota: the waiters decide again, so that none
	// sleeps on a turn given by a rate that no longer holds.
	wake chan struct{}
	// With a Store: when the last request of this replica that the store
	// let through goes; a new local share holds until then.
	sharedUntil time.Time
	// What providers announced, as received (not divided by replicas).
	pauseUntil time.Time
	ann        announced
	written    announced // what was last written to the Store
	logged     time.Time // when the last info line about this key was written
	shown      float64   // the rate last recorded in the steadfast.ratelimit.rate gauge
}

// announced is a limit a provider announced for a key, from at until until.
type announced struct {
	limit  Limit
	perSec float64
	at     time.Time
	until  time.Time
}

func (a *announced) inForce(now time.Time) bool { return a.perSec > 0 && now.Before(a.until) }

// rateNow returns the key's rate as the steadfast.ratelimit.rate gauge shows it, and
// whether it differs from what the gauge shows (then the caller records it,
// after e.mu is released). e.mu is held.
func (l *Limiter) rateNow(e *entry, now time.Time) (float64, bool) {
	if !e.named {
		return 0, false
	}
	r := l.limits[0].perSecond()
	switch {
	case e.pauseUntil.After(now):
		r = 0
	case e.ann.inForce(now):
		r = e.ann.perSec
	}
	if r == e.shown {
		return r, false
	}
	e.shown = r
	return r, true
}

// New returns a Limiter configured by opts: at least one WithLimit, and
// optionally WithStore, WithMaxKeys, WithMaxPause, WithLogger and
// WithMeterProvider. It returns an error naming the option at fault, and
// refuses WithKey, which applies to NewTransport. It starts nothing.
func New(opts ...Option) (*Limiter, error) {
	var cfg config
	if err := applyOptions(ctorNew, &cfg, opts); err != nil {
		return nil, err
	}
	if err := cfg.finishNew(); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, limits: cfg.limits, single: len(cfg.limits) == 1, seed: maphash.MakeSeed(), log: cfg.logger}
	if l.log == nil {
		l.log = slog.Default()
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*entry)
	}
	var err error
	if l.m, err = newMetrics(cfg.meter); err != nil {
		return nil, fmt.Errorf("ratelimit: New: metrics: %w", err)
	}
	if cfg.store != nil {
		if l.sh, err = newShared(cfg.store, cfg.replicas, l.log, &cfg); err != nil {
			return nil, fmt.Errorf("ratelimit: New: WithStore: %w", err)
		}
	}
	return l, nil
}

// Wait waits until key has budget for one request and takes it. It returns
// at once, without waiting and without taking anything, a *LimitedError
// (matching ErrLimited, whose RetryAfter says how long the wait would have
// been) when the wait would end at or after ctx's deadline, and ctx's error
// when ctx ends first. Waiters are served in turn, one interval apart; when
// a provider's announcement changes the key's quota (a pause, a new rate)
// while they wait, they decide again, and a new wait that no longer fits the
// deadline then ends with a *LimitedError too. It may also return an error
// matching ErrTooManyKeys (see WithMaxKeys), or one for a key longer than
// 512 bytes. Wait is safe for concurrent use, as are all the methods.
func (l *Limiter) Wait(ctx context.Context, key string) error { return l.decide(ctx, key, true) }

// Allow takes budget for one request of key when there is some now, and
// returns nil. Otherwise it takes nothing and returns a *LimitedError
// (matching ErrLimited) whose RetryAfter says when key will have budget, so
// a caller that cannot wait (the outbox relay) comes back then. It returns
// ctx's error when ctx has ended, and the errors of Wait for keys. With a
// Store, ctx bounds the store's round trip.
func (l *Limiter) Allow(ctx context.Context, key string) error { return l.decide(ctx, key, false) }

func (l *Limiter) decide(ctx context.Context, key string, wait bool) error {
	if l == nil {
		return errNilLimiter
	}
	if len(key) > maxKeyBytes {
		return fmt.Errorf("ratelimit: key of %d bytes is longer than %d", len(key), maxKeyBytes)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	default:
	}
	for {
		now := time.Now()
		e, err := l.entry(key, now)
		if err != nil {
			return err
		}
		if e.simple.Load() && e.fast.Load().AllowN(now, 1) {
			if !e.dead.Load() {
				return nil
			}
			continue
		}
		var again bool
		if l.sh != nil {
			again, err = l.decideShared(ctx, e, now, wait)
		} else {
			again, err = l.decideLocal(ctx, e, now, wait)
		}
		if !again {
			return err
		}
	}
}

// maxWait is the longest wait a decision at now may commit to: 0 for Allow,
// and for Wait anything that ends before ctx's deadline.
func maxWait(ctx context.Context, now time.Time, wait bool) time.Duration {
	if !wait {
		return 0
	}
	if dl, ok := ctx.Deadline(); ok {
		return max(0, dl.Sub(now)-1)
	}
	return math.MaxInt64
}

func (l *Limiter) decideLocal(ctx context.Context, e *entry, now time.Time, wait bool) (bool, error) {
	mw := maxWait(ctx, now, wait)
	var arr [maxWindows + 1]*rate.Reservation
	e.mu.Lock()
	if e.dead.Load() {
		e.mu.Unlock()
		return true, nil
	}
	if l.sh != nil {
		l.ensureShare(e, now)
	}
	d, res := e.b.take(now, mw, arr[:0])
	if l.sh == nil {
		// The fast path again, once no announcement or pause holds.
		e.simple.Store(l.single && e.b.learned == nil && !e.pauseUntil.After(now))
	}
	w := e.waitChan(d)
	r, show := l.rateNow(e, now)
	e.mu.Unlock()
	if show {
		l.m.setRate(e, r)
	}
	return l.finish(ctx, e, d, mw, w, res)
}

// finish ends a decision: refuse, return, or wait d (cancelling res if the
// wait ends early). It reports true when what a provider announced changed
// the key's quota during the wait (w was closed), so that the caller decides
// again.
func (l *Limiter) finish(ctx context.Context, e *entry, d, mw time.Duration, w chan struct{}, res []*rate.Reservation) (bool, error) {
	if d == 0 {
		return false, nil
	}
	if d > mw {
		l.m.rejected(e)
		return false, &LimitedError{Key: e.key, Delay: d}
	}
	e.mu.Lock()
	e.waiters++
	e.mu.Unlock()
	start := time.Now()
	t := time.NewTimer(d)
	var err error
	again := false
	select {
	case <-t.C:
	case <-ctx.Done():
		err = ctx.Err()
	case <-w:
		again = true
	}
	t.Stop()
	e.mu.Lock()
	e.waiters--
	if err != nil || again {
		cancel(res, time.Now())
	}
	e.mu.Unlock()
	if err != nil {
		return false, err
	}
	l.m.waited1(e, time.Since(start))
	return again, nil
}

// waitChan returns the channel that tells a waiter of d to decide again,
// or nil when it does not wait. e.mu is held.
func (e *entry) waitChan(d time.Duration) chan struct{} {
	if d == 0 {
		return nil
	}
	if e.wake == nil {
		e.wake = make(chan struct{})
	}
	return e.wake
}

// changed wakes the key's waiters to decide again. e.mu is held.
func (e *entry) changed() {
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
}

func (l *Limiter) decideShared(ctx context.Context, e *entry, now time.Time, wait bool) (bool, error) {
	mw := maxWait(ctx, now, wait)
	// Just after the store came back, or while it is away, other replicas
	// may be on their local share: keep to this one's as well.
	settling := now.UnixNano() < l.sh.settleUntil.Load()
	var arr [maxWindows + 1]*rate.Reservation
	var res []*rate.Reservation
	var dl time.Duration
	e.mu.Lock()
	if e.dead.Load() {
		e.mu.Unlock()
		return true, nil
	}
	if settling {
		l.ensureShare(e, now)
		dl, res = e.b.take(now, mw, arr[:0])
	}
	w := e.waitChan(1) // a change while the store decides wakes the waiter too
	e.mu.Unlock()
	if dl > mw {
		return l.finish(ctx, e, dl, mw, nil, nil)
	}
	// The shared quota counts the request when it goes: after the local
	// share's wait.
	ds, err := l.sh.reserve(ctx, e.key, l.limits, dl, mw)
	if err != nil {
		if ctx.Err() != nil {
			e.mu.Lock()
			cancel(res, time.Now())
			e.mu.Unlock()
			return false, ctx.Err()
		}
		if settling {
			return l.finish(ctx, e, dl, mw, w, res) // the local share decided
		}
		return l.decideLocal(ctx, e, time.Now(), wait)
	}
	if ds > mw {
		e.mu.Lock()
		cancel(res, time.Now())
		e.mu.Unlock()
		return l.finish(ctx, e, ds, mw, nil, nil)
	}
	e.mu.Lock()
	if at := now.Add(ds); at.After(e.sharedUntil) {
		e.sharedUntil = at
	}
	if !settling && e.b != nil && !e.b.owes(now) {
		e.b = nil // the next outage makes a new local share
	}
	r, show := l.rateNow(e, now)
	e.mu.Unlock()
	if show {
		l.m.setRate(e, r)
	}
	return l.finish(ctx, e, ds, mw, w, res)
}

// ensureShare makes e's local share of the quota when it has none: every
// rate divided by the replicas, with no budget saved up, and holding until
// this replica's last request that the store let through has gone, and
// what providers announced. e.mu is held.
func (l *Limiter) ensureShare(e *entry, now time.Time) {
	if e.b != nil {
		return
	}
	scale := 1 / float64(l.sh.replicas)
	e.b = newBucket(l.limits, scale, false, now)
	if e.ann.inForce(now) {
		e.b.setLearned(now, e.ann.perSec*scale, scaledBurst(e.ann.limit.Burst, scale), e.ann.until)
	}
	if hold := later(e.pauseUntil, e.sharedUntil); hold.After(now) {
		e.b.hold(now, hold.Sub(now))
	}
}

// entry returns key's entry, made if new.
func (l *Limiter) entry(key string, now time.Time) (*entry, error) {
	s := &l.shards[maphash.String(l.seed, key)%numShards]
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	if e != nil {
		return e, nil
	}
	return l.add(s, key, now)
}

func (l *Limiter) add(s *shard, key string, now time.Time) (*entry, error) {
	max := int64(l.cfg.maxKeys)
	if l.n.Add(1) > max {
		l.n.Add(-1)
		if !l.sweep(now) {
			return nil, l.full()
		}
		if l.n.Add(1) > max {
			l.n.Add(-1)
			return nil, l.full()
		}
	}
	e := &entry{key: key}
	e.attrs, e.named = l.m.attrs(key)
	if l.sh == nil {
		e.b = newBucket(l.limits, 1, true, now)
		e.fast.Store(e.b.wins[0])
		e.simple.Store(l.single)
	}
	s.mu.Lock()
	if old := s.m[key]; old != nil {
		s.mu.Unlock()
		l.n.Add(-1)
		return old, nil
	}
	s.m[key] = e
	s.mu.Unlock()
	if e.named {
		e.mu.Lock()
		r, show := l.rateNow(e, now)
		e.mu.Unlock()
		if show {
			l.m.setRate(e, r)
		}
	}
	return e, nil
}

func (l *Limiter) full() error {
	return fmt.Errorf("%w: %d keys are held (WithMaxKeys) and none is idle", ErrTooManyKeys, l.cfg.maxKeys)
}

// sweep forgets the idle keys; it reports whether it forgot any.
func (l *Limiter) sweep(now time.Time) bool {
	if now.UnixNano() < l.noSweepUntil.Load() {
		return false
	}
	freed := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if l.forget(e, now) {
				delete(s.m, k)
				freed++
			}
		}
		s.mu.Unlock()
	}
	l.n.Add(-int64(freed))
	if freed == 0 {
		l.noSweepUntil.Store(now.Add(sweepPause).UnixNano())
	}
	return freed > 0
}

// forget marks e dead when forgetting it loses nothing: no waiter, no
// provider's announcement in force, and its local budget whole.
func (l *Limiter) forget(e *entry, now time.Time) bool {
	if !e.mu.TryLock() {
		return false
	}
	defer e.mu.Unlock()
	if e.waiters > 0 || e.pauseUntil.After(now) || e.ann.inForce(now) {
		return false
	}
	if e.b == nil {
		e.dead.Store(true)
		return true
	}
	if !e.b.idle(now) {
		return false
	}
	e.dead.Store(true)
	// The fast path takes tokens without e.mu: if one did since idle was
	// checked, keep the entry (that caller either saw dead and looks again,
	// or was let through here).
	if !e.b.idle(now) {
		e.dead.Store(false)
		return false
	}
	return true
}

// Observe learns from resp, the response to a request of key sent at sent,
// what its provider announced, and narrows key's quota accordingly (with a
// Store, for every replica):
//
//   - a 429 stops key for its Retry-After (delta-seconds or an HTTP-date,
//     read against the response's Date), or else until the announced reset,
//     or else for a second;
//   - the RateLimit and RateLimit-Policy fields of the current IETF draft
//     (draft-ietf-httpapi-ratelimit-headers: a reset t in delta-seconds),
//     the older draft's RateLimit-Limit, RateLimit-Remaining and
//     RateLimit-Reset, and X-RateLimit-Limit, X-RateLimit-Remaining and
//     X-RateLimit-Reset (a Unix time or delta-seconds, told apart with the
//     response's Date) lower key's rate to what remains before the reset,
//     and a remaining budget of 0 stops key until the reset.
//
// Only quotas counted in requests are used, and the most restrictive when a
// response announces several. An announcement never raises a rate above the
// shortest window of WithLimit, and none lasts longer than WithMaxPause.
// Concurrent responses are reconciled by the lowest remaining budget: an
// announcement that arrives while the request that carried it was in flight
// together with the one in force only lowers the rate; a later one replaces
// it (sent is when the request was sent; a zero sent counts as in flight
// with every announcement). Unknown and malformed fields are ignored, and so
// is a nil resp.
//
// Transport calls Observe for every response. Call it yourself for requests
// that do not go through a Transport, such as a publisher that took budget
// with Allow. ctx bounds the write to the Store.
func (l *Limiter) Observe(ctx context.Context, key string, resp *http.Response, sent time.Time) {
	if l == nil || resp == nil || !announces(resp) || len(key) > maxKeyBytes {
		return
	}
	now := time.Now()
	a := parseAnnouncement(resp, now, l.cfg.maxPause)
	if a.pause > 0 {
		l.pause(ctx, key, now, a.pause)
	}
	if a.limit.Rate > 0 {
		l.learn(ctx, key, now, a.limit, a.valid, sent)
	}
}

// pause stops key for d.
func (l *Limiter) pause(ctx context.Context, key string, now time.Time, d time.Duration) {
	e, err := l.entry(key, now)
	if err != nil {
		return
	}
	until := now.Add(d)
	e.mu.Lock()
	fresh := !e.pauseUntil.After(now)
	longer := until.After(e.pauseUntil)
	if longer {
		e.pauseUntil = until
		e.changed()
		if e.b != nil {
			e.b.hold(now, d)
			if l.sh == nil {
				e.fast.Store(e.b.wins[0])
				e.simple.Store(false) // until the pause is over
			}
		}
	}
	info := fresh && now.Sub(e.logged) >= time.Minute
	if info {
		e.logged = now
	}
	r, show := l.rateNow(e, now)
	e.mu.Unlock()
	if show {
		l.m.setRate(e, r)
	}
	if !longer {
		return
	}
	if fresh {
		level := slog.LevelDebug
		if info {
			level = slog.LevelInfo
		}
		l.log.Log(ctx, level, "ratelimit: provider asked to pause", "key", key, "for", d)
	}
	if l.sh != nil {
		_ = l.sh.call(ctx, func(ctx context.Context) error { return l.sh.store.Pause(ctx, key, d) })
	}
}

// learn narrows key's rate to lim for valid from now, announced in the
// response to a request sent at sent.
func (l *Limiter) learn(ctx context.Context, key string, now time.Time, lim Limit, valid time.Duration, sent time.Time) {
	r := lim.perSecond()
	lim.Burst = max(1, min(lim.Rate, l.limits[0].Burst))
	e, err := l.entry(key, now)
	if err != nil {
		return
	}
	until := now.Add(valid)
	wide := r >= l.limits[0].perSecond() // no narrower than the configured quota
	e.mu.Lock()
	cur := e.ann
	inForce := cur.inForce(now)
	fresh := false // the announced limit starts with nothing saved up
	switch {
	case inForce && sent.Before(cur.at):
		// In flight together with the announcement in force: the
		// lowest remaining budget wins.
		if r >= cur.perSec {
			e.mu.Unlock()
			return
		}
		e.ann.limit, e.ann.perSec = lim, r
		e.ann.until = later(cur.until, until)
	case wide && !inForce:
		e.mu.Unlock()
		return
	case wide:
		// A later announcement leaves room: the one in force ends.
		e.ann = announced{}
		valid = 0
	case inForce && similar(r, cur.perSec):
		e.ann.until, e.ann.at = until, now
		write := e.written.until.Before(now.Add(valid / 2)) // refresh the Store's copy before it lapses
		if e.b != nil && e.b.learned != nil {
			e.b.until = until
		}
		e.mu.Unlock()
		if write {
			l.learnShared(ctx, e, key, lim, valid, now.Sub(sent))
		}
		return
	default:
		e.ann = announced{limit: lim, perSec: r, at: now, until: until}
		fresh = !inForce || r > cur.perSec
	}
	if e.b != nil {
		switch {
		case e.ann.perSec == 0:
			e.b.learned = nil
			e.simple.Store(l.sh == nil && l.single)
		default:
			scale := 1.0
			if l.sh != nil {
				scale = 1 / float64(l.sh.replicas)
			}
			if fresh {
				e.b.learned = nil
			}
			e.b.setLearned(now, e.ann.perSec*scale, scaledBurst(e.ann.limit.Burst, scale), e.ann.until)
			e.simple.Store(false)
		}
	}
	// Waiters decide again at the new rate. A lower shared rate keeps the
	// turns already given (the Store re-spaces what follows them), and
	// waking those waiters would only add their abandoned turns to it.
	if l.sh == nil || fresh || e.ann.perSec == 0 {
		e.changed()
	}
	info := !inForce && now.Sub(e.logged) >= time.Minute
	if info {
		e.logged = now
	}
	ann := e.ann
	r, show := l.rateNow(e, now)
	e.mu.Unlock()
	if show {
		l.m.setRate(e, r)
	}
	if ann.perSec > 0 {
		level := slog.LevelDebug
		if info {
			level = slog.LevelInfo
		}
		l.log.Log(ctx, level, "ratelimit: provider announced a lower rate",
			"key", key, "rate", ann.perSec, "for", ann.until.Sub(now).Round(time.Millisecond))
	} else {
		l.log.Debug("ratelimit: provider announced room again", "key", key)
	}
	l.learnShared(ctx, e, key, lim, valid, now.Sub(sent))
}

// learnShared writes an announcement to the Store.
func (l *Limiter) learnShared(ctx context.Context, e *entry, key string, lim Limit, valid, inFlight time.Duration) {
	if l.sh == nil {
		return
	}
	e.mu.Lock()
	e.written = announced{limit: lim, perSec: lim.perSecond(), until: time.Now().Add(valid)}
	e.mu.Unlock()
	_ = l.sh.call(ctx, func(ctx context.Context) error {
		return l.sh.store.Learn(ctx, key, lim, valid, inFlight)
	})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// similar reports whether a is within 10% of b.
func similar(a, b float64) bool { return math.Abs(a-b) <= b/10 }
