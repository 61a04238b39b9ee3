package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/semaphore"

	"github.com/steadfast-go/steadfast/breaker/internal/sharing"
)

// State is the state of a circuit.
type State int

// The states of a circuit.
const (
	// Closed: calls run and their outcomes are counted.
	Closed State = iota
	// HalfOpen: a bounded number of probe calls run; the others are rejected.
	HalfOpen
	// Open: calls are rejected without running.
	Open
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "unknown"
}

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return HalfOpen
	case gobreaker.StateOpen:
		return Open
	}
	return Closed
}

// Transition is a change of state, as given to the hooks of [WithStateHook].
type Transition struct {
	// Name is the breaker's name.
	Name string
	// From and To are the states before and after the change.
	From, To State
	// Shared reports a change made by the shared state (a [Syncer]): the
	// circuit is held open because another replica or the replicas together
	// tripped it (To is Open), or that hold ended (From is Open, To is the
	// local state).
	Shared bool
	// At is when the change was seen (wall clock).
	At time.Time
}

// Outcome is how the classifier of [WithClassifier] counts a call.
type Outcome int

// The outcomes of a call.
const (
	// Success counts toward closing (and keeps a closed circuit closed).
	Success Outcome = iota
	// Failure counts toward opening.
	Failure
	// Ignore counts neither way, and frees a half-open probe slot.
	Ignore
)

// Syncer shares the state of breakers beyond the process: give WithSync a
// *redisshare.Share. The exchange between a breaker and its Syncer is
// internal to steadfast, so only steadfast's own packages implement Syncer.
type Syncer interface{ sharing.Syncer }

// The function given to gobreaker returns nil, a failureMarker or an
// ignoredMarker, so that gobreaker counts what our classifier decided
// (gobreaker's own hooks see no context). Each marker is a type of its own:
// gobreaker asks IsExcluded about every call, and a type assertion compares
// with a constant where comparing with an error variable loads it first (a
// measurable part of BenchmarkClosed).
type (
	failureMarker struct{}
	ignoredMarker struct{}
)

func (failureMarker) Error() string { return "breaker: counted failure" }
func (ignoredMarker) Error() string { return "breaker: ignored outcome" }

// isIgnored is gobreaker's IsExcluded.
func isIgnored(err error) bool {
	_, ok := err.(ignoredMarker)
	return ok
}

// isMarker reports whether err is one of the markers: an error that
// gobreaker's Execute returns and is not a marker is its rejection.
func isMarker(err error) bool {
	switch err.(type) {
	case failureMarker, ignoredMarker:
		return true
	}
	return false
}

// Breaker is a circuit breaker over gobreaker v2. Make one with [New]; run
// calls through it with [Execute] or [ExecuteWithFallback].
//
// A call's outcome counts only toward the state it started in: a call that
// started before a state change (say, a slow call that started while closed
// and ends after the circuit opened and went half-open) is not counted at
// all, so a late failure cannot re-open a half-open circuit and a late
// success cannot close it (gobreaker's generations).
//
// A Breaker is safe for concurrent use. The call path takes gobreaker's mutex
// twice and waits on nothing else: state-change hooks, the log line and the
// metrics of a transition, and the [Syncer] run after the call that caused
// the transition returned, outside any lock. Transitions due to time (open
// to half-open) happen, as in gobreaker, when the next call or State sees
// them.
type Breaker struct {
	name     string
	settings sharing.Settings
	cb       *gobreaker.CircuitBreaker[struct{}]
	classify func(context.Context, error) Outcome
	sem      *semaphore.Weighted
	bulkWait time.Duration
	logger   *slog.Logger
	hooks    []func(Transition)
	syncer   Syncer
	member   member // what the syncer sees of the breaker
	ins      *instruments
	rej      rejectOptions
	grouped  bool // in a Group: track calls in flight for eviction
	slots    bool // sem != nil || grouped: calls take and release a slot

	openErr atomic.Pointer[OpenError] // error of the current (or last) local open period
	open    atomic.Pointer[OpenError] // openErr while gobreaker's state is open, else nil
	hold    atomic.Pointer[OpenError] // non-nil while the shared state holds the circuit open

	successes, failures atomic.Uint64 // since the syncer last took them (member.Counts), when syncer != nil
	inflight            atomic.Int64
	lastUsed            atomic.Uint64

	qmu      sync.Mutex
	queue    []Transition
	draining bool
	pending  atomic.Bool
}

// New returns a breaker named name (the name appears in errors, logs and
// metrics) with the defaults described in the package documentation, changed
// by opts. It returns an error naming the option at fault when an option is
// nil, applies to NewGroup or NewTransport only (WithMaxBreakers,
// WithKeyFunc, WithFallback), or makes no sense (a ratio above 1, a zero
// window, a negative duration...). If [WithSync] is given, the breaker
// registers itself with the syncer.
func New(name string, opts ...Option) (*Breaker, error) {
	cfg, err := newConfig(ctorNew, opts)
	if err != nil {
		return nil, err
	}
	ins, err := newInstruments(cfg.meter)
	if err != nil {
		return nil, fmt.Errorf("breaker: New: metric instruments: %w", err)
	}
	b := newBreaker(name, &cfg, ins, false)
	if b.syncer != nil {
		b.syncer.Register(b.member)
	}
	return b, nil
}

func newBreaker(name string, cfg *config, ins *instruments, grouped bool) *Breaker {
	b := &Breaker{
		name: name,
		settings: sharing.Settings{
			FailureRatio:        cfg.ratio,
			MinCalls:            cfg.minCalls,
			ConsecutiveFailures: cfg.consecutive,
			Window:              cfg.window,
			Buckets:             cfg.buckets,
			OpenDuration:        cfg.openDuration,
		},
		classify: cfg.classifier,
		bulkWait: cfg.bulkWait,
		logger:   cfg.logger,
		hooks:    cfg.hooks,
		syncer:   cfg.syncer,
		ins:      ins,
		grouped:  grouped,
	}
	b.member = member{b}
	if b.logger == nil {
		b.logger = slog.Default()
	}
	if cfg.bulkMax > 0 {
		b.sem = semaphore.NewWeighted(int64(cfg.bulkMax))
	}
	b.slots = b.sem != nil || grouped
	b.rej = ins.rejectOptions(name)
	st := gobreaker.Settings{
		Name:          name,
		MaxRequests:   uint32(cfg.probes),
		Interval:      cfg.window,
		Timeout:       cfg.openDuration,
		ReadyToTrip:   b.readyToTrip,
		OnStateChange: b.onStateChange,
		IsSuccessful:  func(err error) bool { return err == nil },
		IsExcluded:    isIgnored,
	}
	if cfg.buckets > 1 {
		st.BucketPeriod = cfg.window / time.Duration(cfg.buckets)
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](st)
	ins.recordState(context.Background(), name, Closed)
	return b
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// State returns the state of the circuit: Open while the shared state holds
// it open, else the local state. Like every method it may be called from a
// state-change hook.
func (b *Breaker) State() State {
	if b.held() != nil {
		b.flush()
		return Open
	}
	s := fromGobreaker(b.cb.State())
	b.flush()
	return s
}

// Remaining returns how long the circuit stays open: zero unless it is
// open.
func (b *Breaker) Remaining() time.Duration {
	var d time.Duration
	if h := b.hold.Load(); h != nil {
		d = h.RetryAfter()
	}
	if b.cb.State() == gobreaker.StateOpen {
		if e := b.openErr.Load(); e != nil {
			d = max(d, e.RetryAfter())
		}
	}
	b.flush()
	return d
}

func (b *Breaker) readyToTrip(c gobreaker.Counts) bool {
	if n := b.settings.ConsecutiveFailures; n > 0 {
		return c.ConsecutiveFailures >= uint32(n)
	}
	return trips(uint64(c.TotalSuccesses), uint64(c.TotalFailures), b.settings.MinCalls, b.settings.FailureRatio)
}

func trips(successes, failures uint64, minCalls int, ratio float64) bool {
	done := successes + failures
	return done >= uint64(minCalls) && float64(failures) >= ratio*float64(done)-1e-9
}

// onStateChange runs under gobreaker's mutex: it records and queues, and
// calls nothing of the user's.
func (b *Breaker) onStateChange(_ string, from, to gobreaker.State) {
	now := time.Now()
	switch {
	case to == gobreaker.StateOpen:
		e := &OpenError{Name: b.name, Until: now.Add(b.settings.OpenDuration)}
		b.openErr.Store(e)
		b.open.Store(e)
	case from == gobreaker.StateOpen:
		b.open.Store(nil)
	}
	b.enqueue(Transition{Name: b.name, From: fromGobreaker(from), To: fromGobreaker(to), At: now})
}

func (b *Breaker) enqueue(t Transition) {
	b.qmu.Lock()
	b.queue = append(b.queue, t)
	b.pending.Store(true)
	b.qmu.Unlock()
}

// flush delivers queued transitions, unless another goroutine is already
// delivering them (it will deliver ours too, in order).
func (b *Breaker) flush() {
	if b.pending.Load() {
		b.drain()
	}
}

func (b *Breaker) drain() {
	b.qmu.Lock()
	if b.draining {
		b.qmu.Unlock()
		return
	}
	b.draining = true
	for len(b.queue) > 0 {
		t := b.queue[0]
		b.queue[0] = Transition{}
		b.queue = b.queue[1:]
		b.qmu.Unlock()
		b.deliverSafely(t)
		b.qmu.Lock()
	}
	b.queue = b.queue[:0]
	b.draining = false
	b.pending.Store(false)
	b.qmu.Unlock()
}

// deliverSafely delivers t; if a hook panics, the queue is left deliverable
// before the panic goes on.
func (b *Breaker) deliverSafely(t Transition) {
	done := false
	defer func() {
		if !done {
			b.qmu.Lock()
			b.draining = false
			b.qmu.Unlock()
		}
	}()
	b.deliver(t)
	done = true
}

func (b *Breaker) deliver(t Transition) {
	ctx := context.Background()
	b.ins.recordTransition(ctx, t)
	level := slog.LevelInfo
	if t.To == Open {
		level = slog.LevelWarn
	}
	b.logger.LogAttrs(ctx, level, "breaker state change",
		slog.String("breaker", t.Name), slog.String("from", t.From.String()),
		slog.String("to", t.To.String()), slog.Bool("shared", t.Shared))
	for _, h := range b.hooks {
		h(t)
	}
	if !t.Shared && b.syncer != nil {
		b.syncer.Notify(b.member)
	}
}

// kind is what became of a call.
type kind int

const (
	ranSuccess kind = iota
	ranFailure
	ranIgnored
	rejected
)

// held returns the shared hold while it lasts. The first to see that it
// ended ends it, with its transition (delivered by the caller's flush).
func (b *Breaker) held() *OpenError {
	h := b.hold.Load()
	if h == nil {
		return nil
	}
	if time.Now().Before(h.Until) {
		return h
	}
	if b.hold.CompareAndSwap(h, nil) {
		if local := fromGobreaker(b.cb.State()); local != Open {
			b.enqueue(Transition{Name: b.name, From: Open, To: local, Shared: true, At: time.Now()})
		}
	}
	return nil
}

// admit checks the shared hold and takes a bulkhead slot.
func (b *Breaker) admit(ctx context.Context) error {
	if h := b.held(); h != nil {
		b.ins.reject(ctx, b.rej.open)
		return h
	}
	if b.sem != nil && !b.sem.TryAcquire(1) {
		if err := b.waitSlot(ctx); err != nil {
			return err
		}
	}
	if b.grouped {
		b.inflight.Add(1)
	}
	return nil
}

func (b *Breaker) waitSlot(ctx context.Context) error {
	if b.bulkWait > 0 {
		wctx, cancel := context.WithTimeout(ctx, b.bulkWait)
		err := b.sem.Acquire(wctx, 1)
		cancel()
		if err == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	b.ins.reject(ctx, b.rej.bulkhead)
	return ErrBulkheadFull
}

func (b *Breaker) release() {
	if b.grouped {
		b.inflight.Add(-1)
	}
	if b.sem != nil {
		b.sem.Release(1)
	}
}

// judge turns a call's result into the marker gobreaker counts.
func (b *Breaker) judge(o Outcome) error {
	switch o {
	case Success:
		if b.syncer != nil {
			b.successes.Add(1)
		}
		return nil
	case Failure:
		if b.syncer != nil {
			b.failures.Add(1)
		}
		return failureMarker{}
	}
	return ignoredMarker{}
}

// outcome judges a non-nil error.
func (b *Breaker) outcome(ctx context.Context, err error) Outcome {
	if ctx.Err() == context.Canceled || errors.Is(err, context.Canceled) {
		return Ignore
	}
	if b.classify == nil {
		return Failure
	}
	return b.classify(ctx, err)
}

func (b *Breaker) rejection(ctx context.Context, gerr error) error {
	if gerr != gobreaker.ErrOpenState {
		b.ins.reject(ctx, b.rej.probes)
		return ErrProbeLimit
	}
	b.ins.reject(ctx, b.rej.open)
	if e := b.openErr.Load(); e != nil {
		return e
	}
	return ErrOpen // not reached: gobreaker reports open only after our hook ran
}

// run is the call path shared by Execute, ExecuteWithFallback and
// Transport. resultOutcome, if not nil, judges a result that came with a nil
// error (Transport: a 5xx response is a failure).
//
// A breaker without a bulkhead, outside a Group and not held open by the
// shared state takes a path with nothing to acquire or release, so that it
// adds as little as possible to gobreaker's own call (BenchmarkClosed); while
// its own open period lasts, it rejects calls without taking gobreaker's
// mutex (BenchmarkOpen). gobreaker's open period ends a moment before ours
// (it starts its clock before it calls our state hook), so gobreaker, not
// this shortcut, decides when the circuit half-opens.
func run[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error), resultOutcome func(T) Outcome) (T, kind, error) {
	if b.slots || b.hold.Load() != nil {
		return runHeld(ctx, b, fn, resultOutcome)
	}
	if e := b.open.Load(); e != nil && time.Now().Before(e.Until) {
		b.flush()
		b.ins.reject(ctx, b.rej.open)
		var zero T
		return zero, rejected, e
	}
	var (
		res T
		err error
		k   = rejected // until the function runs
	)
	_, gerr := b.cb.Execute(func() (struct{}, error) {
		res, err = fn(ctx)
		o := Success
		if err != nil {
			o = b.outcome(ctx, err)
		} else if resultOutcome != nil {
			o = resultOutcome(res)
		}
		k = kind(o) // Success, Failure, Ignore map to ranSuccess, ranFailure, ranIgnored
		return struct{}{}, b.judge(o)
	})
	b.flush()
	if k == rejected {
		return res, rejected, b.rejection(ctx, gerr)
	}
	return res, k, err
}

// runHeld is run for a breaker that has slots to take (a bulkhead, or calls
// in flight counted for a Group's eviction) or that the shared state may
// hold open.
func runHeld[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error), resultOutcome func(T) Outcome) (T, kind, error) {
	var res T
	if err := b.admit(ctx); err != nil {
		b.flush()
		return res, rejected, err
	}
	var (
		err error
		k   kind
		ran bool
	)
	_, gerr := b.cb.Execute(func() (struct{}, error) {
		ran = true
		defer b.release()
		res, err = fn(ctx)
		o := Success
		if err != nil {
			o = b.outcome(ctx, err)
		} else if resultOutcome != nil {
			o = resultOutcome(res)
		}
		k = kind(o)
		return struct{}{}, b.judge(o)
	})
	if !ran {
		b.release()
		b.flush()
		return res, rejected, b.rejection(ctx, gerr)
	}
	b.flush()
	return res, k, err
}

// Execute runs fn through b and returns its result. While the circuit is open
// it returns at once, without calling fn, an error matching [ErrOpen] (an
// [*OpenError] whose RetryAfter is the remaining open time); while it is
// half-open with every probe taken, [ErrProbeLimit]; when the bulkhead is
// full after its bounded wait, [ErrBulkheadFull] (or the context's error if
// ctx ended first). Otherwise it returns what fn returned, and counts it as
// the classifier ([WithClassifier]) says. If fn panics, the call counts as a failure and the
// panic goes on.
func Execute[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	if b == nil || fn == nil {
		var zero T
		return zero, nilArgument("Execute", b, fn == nil, false)
	}
	if b.slots || b.hold.Load() != nil || b.open.Load() != nil {
		res, _, err := run(ctx, b, fn, nil)
		return res, err
	}
	// The closed circuit's path, run's without what Execute does not need:
	// the function given to gobreaker returns nil or a marker, so any other
	// error is gobreaker's rejection.
	var (
		res T
		err error
	)
	_, gerr := b.cb.Execute(func() (struct{}, error) {
		res, err = fn(ctx)
		if err == nil && b.syncer == nil {
			return struct{}{}, nil
		}
		o := Success
		if err != nil {
			o = b.outcome(ctx, err)
		}
		return struct{}{}, b.judge(o)
	})
	b.flush()
	if gerr != nil && !isMarker(gerr) {
		return res, b.rejection(ctx, gerr)
	}
	return res, err
}

// ExecuteWithFallback is [Execute], but when the call is rejected (open,
// probe limit, bulkhead full) or counted as a failure, it returns
// fallback(ctx, err) instead, err being the rejection or fn's error. It never
// calls fallback when the caller cancelled (nor for a call the classifier
// ignores): then it returns fn's result as it is.
func ExecuteWithFallback[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error), fallback func(context.Context, error) (T, error)) (T, error) {
	if b == nil || fn == nil || fallback == nil {
		var zero T
		return zero, nilArgument("ExecuteWithFallback", b, fn == nil, fallback == nil)
	}
	res, k, err := run(ctx, b, fn, nil)
	if wantsFallback(ctx, k, err) {
		return fallback(ctx, err)
	}
	return res, err
}

// nilArgument returns the error of a call of fname with a nil breaker,
// function or fallback.
func nilArgument(fname string, b *Breaker, nilFn, nilFallback bool) error {
	what := "fallback"
	switch {
	case b == nil:
		what = "breaker"
	case nilFn:
		what = "function"
	}
	return fmt.Errorf("breaker: %s: %s is nil", fname, what)
}

// wantsFallback reports whether a call that ended as k with err calls for
// the fallback: a rejection by the breaker or the bulkhead, or a failure,
// and never once the caller cancelled.
func wantsFallback(ctx context.Context, k kind, err error) bool {
	if ctx.Err() == context.Canceled {
		return false
	}
	switch k {
	case rejected:
		return errors.Is(err, ErrOpen) || errors.Is(err, ErrBulkheadFull)
	case ranFailure:
		return true
	}
	return false
}

// member is a breaker as its Syncer sees it (sharing.Member).
type member struct{ b *Breaker }

var _ sharing.Member = member{}

func (m member) Name() string               { return m.b.name }
func (m member) Settings() sharing.Settings { return m.b.settings }

// Counts returns the successes and failures counted since the last call, and
// starts counting again from zero. It counts only for a breaker made with
// WithSync.
func (m member) Counts() (successes, failures uint64) {
	return m.b.successes.Swap(0), m.b.failures.Swap(0)
}

// LocalOpen returns how long the circuit stays open by this process's own
// counts: zero unless the local breaker is open.
func (m member) LocalOpen() time.Duration {
	b := m.b
	var d time.Duration
	if b.cb.State() == gobreaker.StateOpen {
		if e := b.openErr.Load(); e != nil {
			d = e.RetryAfter()
		}
	}
	b.flush()
	return d
}

// Hold holds the circuit open for d because the shared state says it is
// open: calls are rejected with an [*OpenError] whose Shared field is true.
// d <= 0 ends the hold. The start and the end of a hold are transitions
// (Shared is true): hooks, log and metrics see them. While the local breaker
// is open itself, a hold changes nothing visible and makes no transition.
func (m member) Hold(d time.Duration) {
	b := m.b
	b.held() // a hold that ran out ends here, with its transition
	now := time.Now()
	local := fromGobreaker(b.cb.State())
	if d > 0 {
		if b.hold.Swap(&OpenError{Name: b.name, Until: now.Add(d), Shared: true}) == nil && local != Open {
			b.enqueue(Transition{Name: b.name, From: local, To: Open, Shared: true, At: now})
		}
	} else if b.hold.Swap(nil) != nil && local != Open {
		b.enqueue(Transition{Name: b.name, From: Open, To: local, Shared: true, At: now})
	}
	b.flush()
}
