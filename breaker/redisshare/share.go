package redisshare

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/breaker"
)

//go:embed sync.lua
var syncScript string

// Defaults of the options.
const (
	DefaultPrefix   = "steadfast:breaker:"
	DefaultInterval = 500 * time.Millisecond
	DefaultTimeout  = 250 * time.Millisecond
)

// ErrRunning is returned by [Share.Run] when the share is already running.
var ErrRunning = errors.New("redisshare: already running")

// Option configures a [Share].
type Option func(*Share) error

// WithPrefix sets the prefix of the Redis keys; replicas that share state
// use the same prefix and the same breaker names. Keys are
// <prefix>{<breaker name>}:counts and <prefix>{<breaker name>}:open (the
// braces keep a breaker's keys in one Cluster slot). p must not be empty.
// Defaults to "steadfast:breaker:".
func WithPrefix(p string) Option {
	return func(s *Share) error {
		if p == "" {
			return errors.New("redisshare: WithPrefix: prefix is empty")
		}
		s.prefix = p
		return nil
	}
}

// WithInterval sets the time between two passes of the loop. d must be
// positive. Defaults to 500ms.
func WithInterval(d time.Duration) Option {
	return func(s *Share) error {
		if d <= 0 {
			return fmt.Errorf("redisshare: WithInterval: interval %v is not positive", d)
		}
		s.interval = d
		return nil
	}
}

// WithTimeout bounds one pass (one pipelined round trip). d must be
// positive. Defaults to 250ms.
func WithTimeout(d time.Duration) Option {
	return func(s *Share) error {
		if d <= 0 {
			return fmt.Errorf("redisshare: WithTimeout: timeout %v is not positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithLogger sets the logger of outages and recoveries (nothing is logged per
// pass or per call). nil means slog.Default(), which is the default.
func WithLogger(l *slog.Logger) Option {
	return func(s *Share) error {
		s.logger = l
		return nil
	}
}

// Share shares breaker state through Redis. Make one with [New], give it to
// the breakers with breaker.WithSync, and run its loop with [Share.Run]. It is
// safe for concurrent use.
type Share struct {
	client   redis.UniversalClient
	script   *redis.Script
	prefix   string
	interval time.Duration
	timeout  time.Duration
	logger   *slog.Logger

	mu       sync.Mutex                     // guards breakers and degraded; never held while calling a breaker
	breakers map[*breaker.Breaker]time.Time // registered breakers, and when the hold we set on each ends
	wake     chan struct{}
	running  atomic.Bool

	degraded bool // the last pass failed
}

var _ breaker.Syncer = (*Share)(nil)

// New returns a Share over client. It starts nothing: see [Share.Run]. It
// returns an error naming every option that makes no sense.
func New(client redis.UniversalClient, opts ...Option) (*Share, error) {
	if client == nil {
		return nil, errors.New("redisshare: client is nil")
	}
	s := &Share{
		client:   client,
		script:   redis.NewScript(syncScript),
		prefix:   DefaultPrefix,
		interval: DefaultInterval,
		timeout:  DefaultTimeout,
		breakers: make(map[*breaker.Breaker]time.Time),
		wake:     make(chan struct{}, 1),
	}
	var errs []error
	for _, o := range opts {
		if err := o(s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	return s, nil
}

// StalenessBound returns how late, at most, a replica holds a circuit open
// after another replica's breaker opened or the shared window tripped, while
// Redis answers: Interval + 2 × Timeout.
func (s *Share) StalenessBound() time.Duration { return s.interval + 2*s.timeout }

// Register implements [breaker.Syncer]: b takes part in the next pass.
func (s *Share) Register(b *breaker.Breaker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.breakers[b]; !ok {
		s.breakers[b] = time.Time{}
	}
}

// Unregister implements [breaker.Syncer]: b takes no part in later passes.
func (s *Share) Unregister(b *breaker.Breaker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.breakers, b)
}

// Notify implements [breaker.Syncer]: it wakes the loop, so that a local
// breaker that opened is published at once. It never blocks.
func (s *Share) Notify(*breaker.Breaker) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run runs passes every Interval, and at once when a local breaker changes
// state, until ctx ends; then it returns nil. A failed pass is logged (once
// per outage) and the loop goes on. It returns [ErrRunning] if the share is
// already running.
func (s *Share) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.running.Store(false)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		_ = s.Sync(ctx) // logged by Sync
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-s.wake:
		}
	}
}

type job struct {
	b    *breaker.Breaker
	keys []string
	args []any
	cmd  *redis.Cmd
}

// Sync runs one pass now, for every registered breaker, bounded by Timeout:
// push counts and local open periods, pull the shared open periods. Run calls
// it; tests and programs that drive their own loop may too, even while Run
// runs, and so may a state-change hook (no lock is held while a breaker is
// called). It returns the Redis error of a failed pass (already logged).
func (s *Share) Sync(ctx context.Context) error {
	s.mu.Lock()
	jobs := make([]*job, 0, len(s.breakers))
	for b := range s.breakers {
		jobs = append(jobs, &job{b: b})
	}
	s.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	for _, j := range jobs {
		j.keys, j.args = s.request(j.b)
	}

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := s.exec(ctx, jobs, false)
	if err != nil && isNoScript(err) {
		if err = s.script.Load(ctx, s.client).Err(); err == nil {
			err = s.exec(ctx, jobs, true)
		}
	}
	if err != nil {
		s.failed(ctx, err, jobs)
		return err
	}
	if s.setDegraded(false) {
		s.logger.Info("redisshare: Redis reachable again: sharing breaker state", slog.Int("breakers", len(jobs)))
	}
	now := time.Now()
	for _, j := range jobs {
		res, _ := j.cmd.Int64Slice()
		var pttl int64 = -2
		if len(res) > 0 {
			pttl = res[0]
		}
		s.apply(j.b, now, time.Duration(pttl)*time.Millisecond)
	}
	return nil
}

func (s *Share) exec(ctx context.Context, jobs []*job, eval bool) error {
	pipe := s.client.Pipeline()
	for _, j := range jobs {
		if eval {
			j.cmd = s.script.Eval(ctx, pipe, j.keys, j.args...)
		} else {
			j.cmd = s.script.EvalSha(ctx, pipe, j.keys, j.args...)
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

func isNoScript(err error) bool {
	return redis.HasErrorPrefix(err, "NOSCRIPT")
}

// request builds the script's keys and arguments for b, taking its counts.
func (s *Share) request(b *breaker.Breaker) ([]string, []any) {
	p := b.Policy()
	succ, fail := b.SyncCounts()
	minCalls := p.MinCalls
	if p.ConsecutiveFailures > 0 {
		minCalls = 0 // a run of failures cannot be rebuilt from several replicas' counts
	}
	bucket := max(1, (p.Window / time.Duration(p.Buckets)).Milliseconds())
	base := s.prefix + "{" + b.Name() + "}"
	return []string{base + ":counts", base + ":open"}, []any{
		succ, fail, bucket, p.Buckets, minCalls,
		strconv.FormatFloat(p.FailureRatio, 'g', -1, 64),
		max(1, p.OpenDuration.Milliseconds()),
		b.SyncLocalOpen().Milliseconds(),
	}
}

// apply holds b open for d (d <= 0: releases a hold this share set).
func (s *Share) apply(b *breaker.Breaker, now time.Time, d time.Duration) {
	s.mu.Lock()
	until, registered := s.breakers[b]
	if registered {
		if d > 0 {
			s.breakers[b] = now.Add(d)
		} else {
			s.breakers[b] = time.Time{}
		}
	}
	s.mu.Unlock()
	switch {
	case !registered:
	case d > 0:
		b.SyncHold(d)
	case !until.IsZero():
		b.SyncHold(0)
	}
}

// setDegraded records whether Redis is failing and reports whether that
// changed.
func (s *Share) setDegraded(d bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.degraded != d
	s.degraded = d
	return changed
}

// failed logs an outage once and releases the holds that ended.
func (s *Share) failed(ctx context.Context, err error, jobs []*job) {
	if ctx.Err() != context.Canceled && s.setDegraded(true) {
		s.logger.Warn("redisshare: Redis unreachable: breakers use local state until it answers again",
			slog.Int("breakers", len(jobs)), slog.Any("error", err))
	}
	now := time.Now()
	for _, j := range jobs {
		s.mu.Lock()
		until, ok := s.breakers[j.b]
		ended := ok && !until.IsZero() && !now.Before(until)
		if ended {
			s.breakers[j.b] = time.Time{}
		}
		s.mu.Unlock()
		if ended {
			j.b.SyncHold(0)
		}
	}
}
