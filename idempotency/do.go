package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Codec encodes the results that Do stores and decodes them for replays. A
// Codec must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// jsonCodec is the default Codec: encoding/json.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// freshEncoding reports whether every result of c's Marshal is new memory
// that nothing else refers to (a codec of the user's may reuse its
// buffers).
func freshEncoding(c Codec) bool {
	_, ok := c.(jsonCodec)
	return ok
}

// Runner runs work once per key over a Store, for Do. It collapses
// concurrent calls with the same key (and fingerprint) inside the process
// into one run before they reach the store, so one Runner should be shared
// by all the callers of a store. A Runner is safe for concurrent use and
// starts no goroutine of its own.
type Runner struct {
	store    Store
	cfg      config
	metrics  *metrics
	flights  flights
	renewals sync.Pool // of *renewal
}

// NewRunner returns a Runner over store, with options that every Do through
// it uses unless the call overrides them. It returns an error naming the
// option if an option is invalid or does not apply to NewRunner, if store is
// nil, or if WithTransaction is given and store is not a TxStore.
func NewRunner(store Store, opts ...Option) (*Runner, error) {
	cfg := defaultConfig()
	cfg.codec = jsonCodec{}
	cfg.wait = defaultDoWait
	if err := applyOptions(ctorRunner, &cfg, opts); err != nil {
		return nil, err
	}
	m, err := cfg.finish(ctorRunner, store, "do")
	if err != nil {
		return nil, err
	}
	return &Runner{store: store, cfg: cfg, metrics: m}, nil
}

// Do runs fn once for key, through r's store, and returns its result; every
// later call with the same key, here or in another process sharing the
// store, returns the stored result instead, until the retention ends.
//
// Concurrent calls with the same key (and fingerprint) inside the process
// share one run, on the goroutine of the first; the others wait for it, each
// until its own ctx ends. A call that shares another's run decodes its
// result with its own codec, as a later replay from the store would: every
// call with a key must use one codec and one result type (another gets a
// decoding error, never a value decoded for someone else). If that run panics, they get an error and the
// first caller the panic. A call that finds the key held elsewhere (another
// process, another Runner) waits for the result, polling the store with
// backoff, up to WithWait (10s by default), then returns ErrInProgress. The lease of the
// claim is renewed while fn runs (a MemoryStore's claim is held instead: its
// lease does not run out while fn runs). If fn returns an error, the claim is
// released and the error returned, so that the next call runs fn again;
// unless the error is marked with Final: then it is stored and replayed as a
// *FinalError. If fn panics, the claim is released and the panic goes on.
//
// With WithFingerprint, a call whose input differs from the first one's gets
// ErrFingerprintMismatch. With WithTransaction, fn runs inside the store's
// transaction (TxFrom(ctx)), whose commit stores the result.
//
// If fn succeeded but its result could not be stored, Do returns the result
// and an error wrapping ErrNotStored. A result the store refuses for good
// (ErrTooLarge) is not retried: a marker is stored in its place, and later
// calls get an error wrapping ErrNotStored instead of running fn again. Other errors are the store's
// (wrapped), ctx's, and those of options given to this call.
func Do[T any](ctx context.Context, r *Runner, key string, fn func(context.Context) (T, error), opts ...Option) (T, error) {
	var zero T
	switch {
	case r == nil:
		return zero, errors.New("idempotency: Do: nil Runner")
	case fn == nil:
		return zero, errors.New("idempotency: Do: nil func")
	}
	cfg := &r.cfg
	if len(opts) > 0 {
		c := r.cfg
		if err := applyOptions(ctorDo, &c, opts); err != nil {
			return zero, err
		}
		if err := c.validate(ctorDo, r.store); err != nil {
			return zero, err
		}
		cfg = &c
	}
	flightKey := key
	if cfg.fingerprint != "" {
		flightKey = key + "\x00" + cfg.fingerprint
	}
	for {
		fl, leader := r.flights.join(flightKey)
		if leader {
			value, fr, err := lead(ctx, r, cfg, key, flightKey, fl, fn)
			if fr.panicked {
				panic(fr.panicValue)
			}
			switch {
			case fr.ran && (err == nil || isNotStored(err)):
				return value, err
			case err != nil:
				return zero, err
			}
			return decode[T](cfg, key, fr.payload, nil)
		}
		select {
		case <-fl.done:
		case <-ctx.Done():
			return zero, ctx.Err()
		}
		fr, err := fl.result, fl.err
		switch {
		case fr.panicked:
			return zero, fmt.Errorf("idempotency: the run of %q that this call shared panicked: %v", key, fr.panicValue)
		case err != nil && ctx.Err() == nil && isContextError(err):
			// The caller that ran the flight gave up; this one has not.
			continue
		case err != nil:
			if isNotStored(err) && fr.payload != nil {
				return decode[T](cfg, key, fr.payload, err)
			}
			return zero, err
		}
		return decode[T](cfg, key, fr.payload, nil)
	}
}

// isNotStored reports whether err wraps ErrNotStored.
func isNotStored(err error) bool {
	return errors.Is(err, ErrNotStored)
}

// decode decodes a stored or shared result, and returns it with err.
func decode[T any](cfg *config, key string, payload []byte, err error) (T, error) {
	var v T
	if derr := cfg.codec.Unmarshal(payload, &v); derr != nil {
		var zero T
		return zero, fmt.Errorf("idempotency: decoding the stored result of %q: %w", key, derr)
	}
	return v, err
}

// lead runs the flight fl on the caller's goroutine and hands its outcome to
// the callers that joined it. value is fn's result if this flight ran it.
func lead[T any](ctx context.Context, r *Runner, cfg *config, key, flightKey string, fl *flight, fn func(context.Context) (T, error)) (value T, fr flightResult, err error) {
	defer func() { r.flights.finish(flightKey, fl, fr, err) }()
	var txCtx context.Context
	if cfg.transaction {
		// Detached from the caller, so that the result of work that
		// finished is committed; bounded by WithMaxTxDuration.
		var cancel context.CancelFunc
		txCtx, cancel = txContext(ctx, cfg.maxTx)
		defer cancel()
	}
	acquired, token, tx, fr, err := r.claim(ctx, txCtx, cfg, key)
	if err != nil || !acquired {
		return value, fr, err
	}
	return execute(ctx, txCtx, r, cfg, key, token, tx, fn)
}

// flights collapses concurrent calls with the same key into one run, as
// golang.org/x/sync/singleflight does, with two differences that Do needs:
// the run happens on the first caller's own goroutine (singleflight's DoChan
// starts a goroutine per run, whose stack then grows), and a caller waiting
// for another's run leaves as soon as its own context ends (singleflight's
// Do cannot).
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
	// free is a flight that nobody joined, kept for the next run: one is
	// enough for a caller at a time, and needs no sync.Pool (f.mu is held
	// anyway).
	free *flight
}

// flight is one run. done is made by the first caller that joins the run,
// and closed once result and err are set.
type flight struct {
	done    chan struct{}
	waiters int
	result  flightResult
	err     error
}

// join returns the flight of key, and whether the caller leads it (it
// started it, and must finish it). A caller that does not lead waits on the
// flight's done.
func (f *flights) join(key string) (*flight, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.m[key]; ok {
		fl.waiters++
		if fl.done == nil {
			fl.done = make(chan struct{})
		}
		return fl, false
	}
	if f.m == nil {
		f.m = make(map[string]*flight)
	}
	fl := f.free
	if fl != nil {
		f.free = nil
	} else {
		fl = new(flight)
	}
	f.m[key] = fl
	return fl, true
}

// finish hands the outcome to the waiters. A flight that nobody joined is
// reused.
func (f *flights) finish(key string, fl *flight, result flightResult, err error) {
	f.mu.Lock()
	delete(f.m, key)
	done, waiters := fl.done, fl.waiters
	if waiters == 0 {
		// Nobody else refers to fl: it is reused.
		*fl = flight{}
		f.free = fl
		f.mu.Unlock()
		return
	}
	fl.result, fl.err = result, err
	f.mu.Unlock()
	close(done)
}

// The stored form of a Do result: the codec's encoding followed by tagValue,
// an error message followed by tagError, or, for a result the store refused
// for good, the store's reason followed by tagNotStored.
const (
	tagValue     byte = 'v'
	tagError     byte = 'e'
	tagNotStored byte = 'n'
)

type flightResult struct {
	// ran is true when this flight ran the work (its value is the caller's).
	ran bool
	// payload is the encoded result to decode.
	payload    []byte
	panicked   bool
	panicValue any
}

// claim claims key for one flight, or finds its result: it returns whether
// it acquired the claim, with its token (and transaction, begun on txCtx in
// transactional mode), or the stored result.
func (r *Runner) claim(ctx, txCtx context.Context, cfg *config, key string) (bool, int64, ClaimTx, flightResult, error) {
	fp := cfg.fingerprint
	var deadline time.Time
	for {
		var (
			c   Claim
			tx  ClaimTx
			err error
		)
		if cfg.transaction {
			tx, c, err = r.store.(TxStore).BeginTx(txCtx, key, fp, cfg.lease)
		} else {
			c, err = claimKey(ctx, r.store, key, fp, cfg.lease)
		}
		if err != nil {
			if !isContextError(err) {
				r.metrics.add(ctx, r.metrics.storeErrors)
			}
			return false, 0, nil, flightResult{}, fmt.Errorf("idempotency: claiming %q: %w", key, err)
		}
		if c.Acquired {
			r.metrics.add(ctx, r.metrics.executions)
			return true, c.Token, tx, flightResult{}, nil
		}
		rec := c.Record
		for {
			if rec.Fingerprint != fp {
				r.metrics.add(ctx, r.metrics.mismatches)
				return false, 0, nil, flightResult{}, fmt.Errorf("%w: %q", ErrFingerprintMismatch, key)
			}
			if rec.Status == StatusCompleted {
				r.metrics.add(ctx, r.metrics.replays)
				fr, err := replayDo(key, rec.Response)
				return false, 0, nil, fr, err
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(cfg.wait)
			}
			rec, err = waitRecord(ctx, r.store, key, fp, deadline)
			if err == nil {
				continue
			}
			if errors.Is(err, errClaimAgain) {
				break
			}
			if errors.Is(err, ErrInProgress) {
				r.metrics.add(ctx, r.metrics.conflicts)
				return false, 0, nil, flightResult{}, fmt.Errorf("%w: %q", ErrInProgress, key)
			}
			if !isContextError(err) {
				r.metrics.add(ctx, r.metrics.storeErrors)
			}
			return false, 0, nil, flightResult{}, fmt.Errorf("idempotency: waiting for %q: %w", key, err)
		}
	}
}

func replayDo(key string, stored []byte) (flightResult, error) {
	if len(stored) == 0 {
		return flightResult{}, fmt.Errorf("idempotency: the stored result of %q is empty: not written by Do", key)
	}
	payload, tag := stored[:len(stored)-1], stored[len(stored)-1]
	switch tag {
	case tagValue:
		return flightResult{payload: payload}, nil
	case tagError:
		return flightResult{}, &FinalError{Err: errors.New(string(payload)), Replayed: true}
	case tagNotStored:
		return flightResult{}, &notStoredError{key: key, reason: errors.New(string(payload) + " (the work ran once; it does not run again)")}
	}
	return flightResult{}, fmt.Errorf("idempotency: the stored result of %q was not written by Do", key)
}

// execute runs fn under the claim held with token (or in tx, begun on
// txCtx), then stores its result or gives the claim up. value is fn's
// result.
func execute[T any](ctx, txCtx context.Context, r *Runner, cfg *config, key string, token int64, tx ClaimTx, fn func(context.Context) (T, error)) (value T, fr flightResult, err error) {
	runCtx := ctx
	var ren *renewal
	if tx != nil {
		runCtx = withTx(ctx, tx)
	} else {
		ren = startRenewal(ctx, &r.renewals, r.store, key, token, cfg.lease, cfg.logger)
	}
	value, stored, err, pv, panicked := callExec(runCtx, cfg, key, fn)
	ren.stop()
	sctx, cancel := afterWork(ctx, r.store, cfg.storeTimeout)
	defer cancel()
	if tx != nil {
		sctx = txCtx
	}
	if panicked || (err != nil && !isFinal(err)) {
		r.undo(sctx, cfg, key, token, tx)
		var zero T
		return zero, flightResult{panicked: panicked, panicValue: pv}, err
	}
	done := flightResult{ran: true}
	if err != nil {
		stored = append([]byte(err.Error()), tagError)
	} else {
		done.payload = stored[:len(stored)-1]
	}
	if tx != nil {
		// A final error is a refusal: its writes are rolled back to the
		// savepoint taken after the claim.
		discard := err != nil
		cerr := tx.Commit(sctx, stored, cfg.retention, discard)
		if errors.Is(cerr, ErrTooLarge) {
			// Refused before anything else: commit the marker instead.
			if cerr = tx.Commit(sctx, notStoredMarker(cerr), cfg.retention, discard); cerr == nil {
				return value, done, notStored(key, err, ErrTooLarge)
			}
		}
		if cerr != nil {
			r.metrics.add(ctx, r.metrics.storeErrors)
			return value, flightResult{}, fmt.Errorf("idempotency: committing %q: %w", key, cerr)
		}
		return value, done, err
	}
	var cerr error
	if m, ok := r.store.(*MemoryStore); ok && freshEncoding(cfg.codec) {
		// The encoding is Do's own: the store keeps it without a copy
		// (the callers that share it only read it, as they read a stored
		// one). A MemoryStore's refusals are all for good: complete would
		// not retry them.
		cerr = m.completeOwned(sctx, key, token, stored, cfg.retention)
	} else {
		cerr = complete(sctx, r.store, key, token, stored, cfg.retention)
	}
	if errors.Is(cerr, ErrTooLarge) {
		// The store refuses the result for good: keep the marker, so that
		// later calls are told, and the work does not run again.
		reason := cerr
		if cerr = complete(sctx, r.store, key, token, notStoredMarker(reason), cfg.retention); cerr == nil {
			cfg.logger.Warn("idempotency: the work ran but its result is too large to store; later calls get ErrNotStored",
				"key", key, "error", reason)
			return value, done, notStored(key, err, reason)
		}
	}
	if cerr != nil {
		unhold(r.store, key, token)
		r.metrics.add(ctx, r.metrics.storeErrors)
		cfg.logger.Error("idempotency: the work ran but its result was not stored; a retry may run it again",
			"key", key, "error", cerr)
		return value, done, notStored(key, err, cerr)
	}
	return value, done, err
}

// notStoredMarker returns the stored form of a result the store refused
// for reason (ErrTooLarge): short, so that it fits where the result did not.
func notStoredMarker(error) []byte {
	return append([]byte("too large for the store"), tagNotStored)
}

// notStored returns the error of a call whose result (or error err, when
// the work failed with a final error) was not stored for reason: err
// itself, which the caller already has, or an error wrapping ErrNotStored.
func notStored(key string, err, reason error) error {
	if err != nil {
		return err
	}
	return &notStoredError{key: key, reason: reason}
}

// undo gives up the claim after work that is to run again.
func (r *Runner) undo(ctx context.Context, cfg *config, key string, token int64, tx ClaimTx) {
	var err error
	if tx != nil {
		err = tx.Rollback(ctx)
	} else {
		err = r.store.Release(ctx, key, token)
	}
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		r.metrics.add(ctx, r.metrics.storeErrors)
		cfg.logger.Warn("idempotency: releasing a claim failed; the key stays held until its lease ends",
			"key", key, "error", err)
	}
}

// callExec calls fn and encodes its result, followed by tagValue, into
// stored. A panic of either is recovered into pv.
func callExec[T any](ctx context.Context, cfg *config, key string, fn func(context.Context) (T, error)) (value T, stored []byte, err error, pv any, panicked bool) {
	panicked = true
	defer func() {
		if panicked {
			pv = recover()
		}
	}()
	value, err = fn(ctx)
	var zero T
	if err != nil {
		// Do returns no result with an error, whatever fn returned.
		value = zero
	} else if b, merr := cfg.codec.Marshal(value); merr != nil {
		value, err = zero, fmt.Errorf("idempotency: encoding the result of %q: %w", key, merr)
	} else {
		stored = append(b, tagValue)
	}
	panicked = false
	return value, stored, err, nil, false
}
