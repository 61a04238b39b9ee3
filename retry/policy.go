package retry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel"
)

// Policy retries calls: Do and DoValue for functions, and the Transports made
// with it for HTTP requests. It holds the settings, the retry budget of Do
// and the metric instruments; each call keeps its own backoff state. A Policy
// is safe for concurrent use by any number of goroutines, and is meant to be
// made once per dependency and shared. Make Policies with New: the zero
// Policy is not usable.
type Policy struct {
	cfg    config
	rnd    func() float64 // source of the jitter: math/rand/v2's global one, or a test's
	budget *budget        // nil without a budget
	ins    *instruments
}

// New returns a Policy with the given options applied over the defaults (4
// attempts, full-jitter backoff from 100 ms capped at 10 s, no per-attempt
// timeout, Retry-After honoured up to 30 s, a budget of 20% of recent
// requests plus 10 retries per 10 s). It returns an error naming the option
// at fault when an option is nil, does not apply to New or makes no sense,
// or the error of creating the metric instruments.
func New(opts ...Option) (*Policy, error) {
	c := config{
		maxAttempts:   defaultMaxAttempts,
		base:          defaultBase,
		max:           defaultMax,
		maxRetryAfter: defaultMaxRetryAfter,
		budget:        true,
		budgetRatio:   defaultBudgetRatio,
		budgetFloor:   defaultBudgetFloor,
		budgetWindow:  defaultBudgetWindow,
	}
	if err := applyOptions(ctorNew, &c, opts); err != nil {
		return nil, err
	}
	p := &Policy{cfg: c, rnd: c.rnd}
	if p.rnd == nil {
		p.rnd = rand.Float64
	}
	mp := c.meterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	ins, err := newInstruments(mp, c.name)
	if err != nil {
		return nil, fmt.Errorf("retry: New: metric instruments: %w", err)
	}
	p.ins = ins
	p.budget = p.newBudget()
	return p, nil
}

// newBudget returns a fresh budget with the policy's settings, or nil.
func (p *Policy) newBudget() *budget {
	if !p.cfg.budget {
		return nil
	}
	return newBudget(p.cfg.budgetRatio, p.cfg.budgetFloor, p.cfg.budgetWindow, time.Now())
}

// newBackOff returns a fresh backoff/v4 BackOff with the policy's schedule:
// full jitter, or the result of the WithBackOffFunc function.
func (p *Policy) newBackOff() backoff.BackOff {
	if p.cfg.newBackOff != nil {
		return p.cfg.newBackOff()
	}
	return &fullJitter{base: p.cfg.base, max: p.cfg.max, rnd: p.rnd}
}

func (p *Policy) logger() *slog.Logger {
	if p.cfg.logger != nil {
		return p.cfg.logger
	}
	return slog.Default()
}

// Do calls fn until it succeeds, returns an error that may not be retried, or
// the policy p gives up, and waits between attempts as p says. ctx is the
// overall deadline: each attempt gets ctx (or a child of it bounded by the
// per-attempt timeout), a wait that would end at or after ctx's deadline is
// not started, and when ctx ends during a wait Do returns at once.
//
// Do returns nil after a success. It returns fn's error as it is when the
// error is marked Permanent or the classifier says it may not be retried. It
// returns a *GaveUpError (errors.Is(err, ErrGaveUp)) when attempts, the
// deadline, the budget or the backoff run out, and a *RetryAfterError when
// the error asks for a delay (RetryAfter) beyond WithMaxRetryAfter or the
// deadline. When ctx ends, it returns an error that matches ctx.Err() and,
// if an attempt failed before, that attempt's error; when ctx is already done
// fn is not called. A nil p or fn is an error, and fn is not called.
func Do(ctx context.Context, p *Policy, fn func(ctx context.Context) error) error {
	if p == nil || fn == nil {
		return checkDo("Do", p, fn == nil)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.loop(ctx, p.budget, func(ctx context.Context) (int, verdict, error) {
		if p.cfg.attemptTimeout <= 0 {
			err := fn(ctx)
			if err == nil {
				return 0, done, nil
			}
			return 0, p.classify(err), err
		}
		actx, cancel := withAttemptTimeout(ctx, p.cfg.attemptTimeout)
		err := attemptError(ctx, actx, fn(actx))
		cancel()
		if err == nil {
			return 0, done, nil
		}
		return 0, p.classify(err), err
	})
}

// DoValue is Do for a function that returns a value: it returns the value of
// the attempt that succeeded, or the zero T and the error Do would return.
func DoValue[T any](ctx context.Context, p *Policy, fn func(ctx context.Context) (T, error)) (T, error) {
	var v T
	if p == nil || fn == nil {
		return v, checkDo("DoValue", p, fn == nil)
	}
	err := Do(ctx, p, func(ctx context.Context) error {
		r, err := fn(ctx)
		if err == nil {
			v = r
		}
		return err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

func checkDo(name string, p *Policy, nilFn bool) error {
	switch {
	case p == nil:
		return fmt.Errorf("retry: %s: policy is nil", name)
	case nilFn:
		return fmt.Errorf("retry: %s: function is nil", name)
	}
	return nil
}

// classify decides whether a failed attempt of Do may be retried.
func (p *Policy) classify(err error) verdict {
	switch {
	case IsPermanent(err):
		return stop
	case errors.Is(err, ErrAttemptTimeout):
		return again
	case p.cfg.classifier != nil && !p.cfg.classifier(err):
		return stop
	}
	return again
}

// attemptError returns err, marked as an attempt timeout when the attempt's
// context actx ended by the per-attempt timeout while ctx lives.
func attemptError(ctx, actx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || actx.Err() == nil || errors.Is(err, ErrAttemptTimeout) {
		return err
	}
	if context.Cause(actx) != ErrAttemptTimeout {
		return err
	}
	return &attemptTimeoutWrap{err: err}
}

// attemptTimeoutWrap marks the error of an attempt that hit the per-attempt
// timeout.
type attemptTimeoutWrap struct{ err error }

func (e *attemptTimeoutWrap) Error() string   { return "retry: attempt timed out: " + e.err.Error() }
func (e *attemptTimeoutWrap) Unwrap() []error { return []error{ErrAttemptTimeout, e.err} }

// verdict is what an attempt says about its outcome.
type verdict uint8

const (
	done         verdict = iota // success (err == nil)
	stop                        // failure that may not be retried: return it as it is
	again                       // failure that may be retried
	cannotReplay                // failure that may be retried but the request cannot be replayed
)

// loop runs try until it succeeds or the policy stops. b is the budget to
// charge, or nil. try makes one attempt and returns the HTTP status it saw
// (or 0), its verdict and its error; it must have released everything the
// attempt held when it returns a failure.
func (p *Policy) loop(ctx context.Context, b *budget, try func(ctx context.Context) (int, verdict, error)) error {
	if b != nil {
		b.request(time.Now())
	}
	var bo backoff.BackOff
	for n := 1; ; n++ {
		status, v, err := try(ctx)
		p.ins.attempts.Add(ctx, 1, p.ins.opts...)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return canceled(ctx, n, err)
		}
		switch v {
		case done, stop:
			return err
		case cannotReplay:
			return p.giveUp(ctx, &GaveUpError{Attempts: n, LastStatus: status, Reason: ErrBodyNotRewindable, Err: err})
		}
		if n >= p.cfg.maxAttempts {
			return p.giveUp(ctx, &GaveUpError{Attempts: n, LastStatus: status, Reason: ErrAttemptsExhausted, Err: err})
		}
		now := time.Now()
		deadline, hasDeadline := ctx.Deadline()
		wait, asked := RetryAfter(err)
		if asked && wait >= 0 {
			limit := p.cfg.maxRetryAfter
			if hasDeadline {
				limit = min(limit, deadline.Sub(now))
			}
			if wait > p.cfg.maxRetryAfter || (hasDeadline && !now.Add(wait).Before(deadline)) {
				g := &GaveUpError{Attempts: n, LastStatus: status, Reason: ErrRetryAfterTooLong, Err: err}
				p.giveUp(ctx, g)
				return &RetryAfterError{Delay: wait, Limit: max(limit, 0), GaveUp: g}
			}
		} else {
			if bo == nil {
				bo = p.newBackOff()
			}
			wait = bo.NextBackOff()
			if wait == backoff.Stop {
				return p.giveUp(ctx, &GaveUpError{Attempts: n, LastStatus: status, Reason: ErrBackOffStop, Err: err})
			}
			if hasDeadline && !now.Add(wait).Before(deadline) {
				return p.giveUp(ctx, &GaveUpError{Attempts: n, LastStatus: status, Reason: ErrDeadlineTooClose, Err: err})
			}
		}
		if b != nil {
			allowed, report := b.retry(now)
			if report {
				p.logBudget(ctx)
			}
			if !allowed {
				p.ins.refusals.Add(ctx, 1, p.ins.opts...)
				return p.giveUp(ctx, &GaveUpError{Attempts: n, LastStatus: status, Reason: ErrBudgetExhausted, Err: err})
			}
		}
		p.ins.retries.Add(ctx, 1, p.ins.opts...)
		if p.cfg.onRetry != nil {
			p.cfg.onRetry(ctx, n, err, wait)
		}
		if l := p.logger(); l.Enabled(ctx, slog.LevelDebug) {
			l.LogAttrs(ctx, slog.LevelDebug, "retry: retrying",
				slog.String("policy", p.cfg.name), slog.Int("attempt", n),
				slog.Duration("wait", wait), slog.Int("status", status), slog.Any("error", err))
		}
		if sleep(ctx, wait) != nil {
			return canceled(ctx, n, err)
		}
	}
}

// giveUp counts and logs a give-up and returns g.
func (p *Policy) giveUp(ctx context.Context, g *GaveUpError) error {
	opts := p.ins.reasons[g.Reason]
	p.ins.giveUps.Add(ctx, 1, opts...)
	if l := p.logger(); l.Enabled(ctx, slog.LevelDebug) {
		l.LogAttrs(ctx, slog.LevelDebug, "retry: giving up",
			slog.String("policy", p.cfg.name), slog.Int("attempts", g.Attempts),
			slog.Int("status", g.LastStatus), slog.String("reason", reasonName(g.Reason)),
			slog.Any("error", g.Err))
	}
	return g
}

// logBudget logs that the budget refuses retries (at most once per window).
func (p *Policy) logBudget(ctx context.Context) {
	p.logger().LogAttrs(ctx, slog.LevelWarn, "retry: budget exhausted, refusing retries",
		slog.String("policy", p.cfg.name), slog.Float64("ratio", p.cfg.budgetRatio),
		slog.Int("floor", p.cfg.budgetFloor), slog.Duration("window", p.cfg.budgetWindow))
}

// canceled returns the error of a call whose context ended after n attempts,
// the last of which failed with last.
func canceled(ctx context.Context, n int, last error) error {
	cerr := ctx.Err()
	if errors.Is(last, cerr) {
		return last
	}
	return &canceledError{ctxErr: cerr, attempts: n, last: last}
}

// canceledError matches both the context's error and the last attempt's.
type canceledError struct {
	ctxErr   error
	attempts int
	last     error
}

func (e *canceledError) Error() string {
	return fmt.Sprintf("%v (retry: after %d attempts, last error: %v)", e.ctxErr, e.attempts, e.last)
}

func (e *canceledError) Unwrap() []error { return []error{e.ctxErr, e.last} }
