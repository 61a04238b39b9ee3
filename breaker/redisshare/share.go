package redisshare

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/breaker/internal/sharing"
	"github.com/steadfast-go/steadfast/internal/option"
)

//go:embed sync.lua
var syncScript string

// Defaults of the options; each option's documentation repeats its own.
const (
	defaultPrefix   = "steadfast:breaker:"
	defaultInterval = 500 * time.Millisecond
	defaultTimeout  = 250 * time.Millisecond
)

// ErrRunning is returned by [Share.Run] when the share is already running.
var ErrRunning = errors.New("redisshare: already running")

// Option configures a [Share]. Options are made by the With functions of
// this package and applied in order; New refuses, with an error naming it,
// an option that is nil or makes no sense.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

type config struct {
	prefix   string
	interval time.Duration
	timeout  time.Duration
	logger   *slog.Logger
}

// WithPrefix sets the prefix of the Redis keys; replicas that share state
// use the same prefix and the same breaker names. Keys are
// <prefix>{<breaker name>}:counts and <prefix>{<breaker name>}:open (the
// braces keep a breaker's keys in one Cluster slot). prefix must not be
// empty. Defaults to "steadfast:breaker:".
func WithPrefix(prefix string) Option {
	return newOption("WithPrefix", func(c *config) error {
		if prefix == "" {
			return errors.New("prefix is empty")
		}
		c.prefix = prefix
		return nil
	})
}

// WithInterval sets the time between two passes of the loop. d must be
// positive. Defaults to 500 ms.
func WithInterval(d time.Duration) Option {
	return newOption("WithInterval", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("interval %v must be positive", d)
		}
		c.interval = d
		return nil
	})
}

// WithTimeout bounds one pass (one pipelined round trip). d must be
// positive. Defaults to 250 ms.
func WithTimeout(d time.Duration) Option {
	return newOption("WithTimeout", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("timeout %v must be positive", d)
		}
		c.timeout = d
		return nil
	})
}

// WithLogger sets the logger of outages and recoveries (nothing is logged per
// pass or per call). l must not be nil. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	})
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

	registry // the breakers made with breaker.WithSync(share); it makes a Share a breaker.Syncer
	running  atomic.Bool
	degraded atomic.Bool // the last pass failed
}

// registry is the exchange with the breakers, internal to steadfast: an
// unexported alias, so that its Register, Unregister and Notify methods,
// which make a Share a breaker.Syncer, stay out of this package's
// documentation.
type registry = sharing.Registry

var _ breaker.Syncer = (*Share)(nil)

// New returns a Share over client. It starts nothing: see [Share.Run]. It
// returns an error when client is nil, and an error naming the option at
// fault when an option is nil or makes no sense.
func New(client redis.UniversalClient, opts ...Option) (*Share, error) {
	if client == nil {
		return nil, errors.New("redisshare: New: client is nil")
	}
	c := config{prefix: defaultPrefix, interval: defaultInterval, timeout: defaultTimeout}
	err := option.Apply("redisshare", "New", &c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
	if err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return &Share{
		client:   client,
		script:   redis.NewScript(syncScript),
		prefix:   c.prefix,
		interval: c.interval,
		timeout:  c.timeout,
		logger:   c.logger,
	}, nil
}

// StalenessBound returns how late, at most, a replica holds a circuit open
// after another replica's breaker opened or the shared window tripped, while
// Redis answers: the interval (WithInterval) + 2 × the timeout (WithTimeout).
func (s *Share) StalenessBound() time.Duration { return s.interval + 2*s.timeout }

// Run runs passes every interval (WithInterval), and at once when a local breaker changes
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
		case <-sharing.Wake(&s.registry):
		}
	}
}

type job struct {
	b    sharing.Member
	keys []string
	args []any
	cmd  *redis.Cmd
}

// Sync runs one pass now, for every registered breaker, bounded by the
// timeout (WithTimeout):
// push counts and local open periods, pull the shared open periods. Run calls
// it; tests and programs that drive their own loop may too, even while Run
// runs, and so may a state-change hook (no lock is held while a breaker is
// called). It returns the Redis error of a failed pass (already logged).
func (s *Share) Sync(ctx context.Context) error {
	members := sharing.Members(&s.registry)
	jobs := make([]*job, 0, len(members))
	for _, b := range members {
		jobs = append(jobs, &job{b: b})
	}
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
func (s *Share) request(b sharing.Member) ([]string, []any) {
	p := b.Settings()
	succ, fail := b.Counts()
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
		b.LocalOpen().Milliseconds(),
	}
}

// apply holds b open for d (d <= 0: releases a hold this share set).
func (s *Share) apply(b sharing.Member, now time.Time, d time.Duration) {
	var until time.Time
	if d > 0 {
		until = now.Add(d)
	}
	previous, registered := sharing.SetHold(&s.registry, b, until)
	switch {
	case !registered:
	case d > 0:
		b.Hold(d)
	case !previous.IsZero():
		b.Hold(0)
	}
}

// setDegraded records whether Redis is failing and reports whether that
// changed.
func (s *Share) setDegraded(d bool) bool { return s.degraded.Swap(d) != d }

// failed logs an outage once and releases the holds that ended.
func (s *Share) failed(ctx context.Context, err error, jobs []*job) {
	if ctx.Err() != context.Canceled && s.setDegraded(true) {
		s.logger.Warn("redisshare: Redis unreachable: breakers use local state until it answers again",
			slog.Int("breakers", len(jobs)), slog.Any("error", err))
	}
	now := time.Now()
	for _, j := range jobs {
		if sharing.EndHold(&s.registry, j.b, now) {
			j.b.Hold(0)
		}
	}
}
