package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

type receipt struct {
	ID     string
	Amount int
}

func newRunner(t testing.TB, store idempotency.Store, opts ...idempotency.Option) *idempotency.Runner {
	t.Helper()
	r, err := idempotency.NewRunner(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRunnerOptions(t *testing.T) {
	t.Parallel()
	mem := newStore(t)
	tests := []struct {
		name    string
		store   idempotency.Store
		opts    []idempotency.Option
		wantErr string
	}{
		{"nil store", nil, nil, "nil store"},
		{"nil option", mem, []idempotency.Option{nil}, "option 0 is nil"},
		{"short lease", mem, []idempotency.Option{idempotency.WithLease(time.Millisecond)}, "WithLease"},
		{"lease over retention", mem, []idempotency.Option{idempotency.WithLease(time.Hour), idempotency.WithRetention(time.Minute)}, "WithLease"},
		{"zero retention", mem, []idempotency.Option{idempotency.WithRetention(0)}, "WithRetention"},
		{"negative wait", mem, []idempotency.Option{idempotency.WithWait(-time.Second)}, "WithWait"},
		{"zero store timeout", mem, []idempotency.Option{idempotency.WithStoreTimeout(0)}, "WithStoreTimeout"},
		{"nil logger", mem, []idempotency.Option{idempotency.WithLogger(nil)}, "WithLogger"},
		{"nil meter provider", mem, []idempotency.Option{idempotency.WithMeterProvider(nil)}, "WithMeterProvider"},
		{"nil codec", mem, []idempotency.Option{idempotency.WithCodec(nil)}, "WithCodec"},
		{"transaction without TxStore", mem, []idempotency.Option{idempotency.WithTransaction()}, "WithTransaction"},
		{"transaction with TxStore", &fakeTxStore{MemoryStore: mem}, []idempotency.Option{idempotency.WithTransaction()}, ""},
		{"defaults", mem, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := idempotency.NewRunner(tt.store, tt.opts...)
			if tt.wantErr == "" {
				if err != nil || r == nil {
					t.Fatalf("NewRunner = %v, %v", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewRunner error = %v; want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestDoRunsOnceAndReplays(t *testing.T) {
	t.Parallel()
	r := newRunner(t, newStore(t))
	ctx := context.Background()
	var runs atomic.Int64
	fn := func(context.Context) (receipt, error) {
		runs.Add(1)
		return receipt{ID: "ch_1", Amount: 42}, nil
	}
	for i := range 3 {
		got, err := idempotency.Do(ctx, r, "charge-1", fn)
		if err != nil || got != (receipt{ID: "ch_1", Amount: 42}) {
			t.Fatalf("call %d: Do = %+v, %v", i, got, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("fn ran %d times; want 1", n)
	}
	// Another key runs again.
	if _, err := idempotency.Do(ctx, r, "charge-2", fn); err != nil || runs.Load() != 2 {
		t.Fatalf("another key: err %v, runs %d", err, runs.Load())
	}
}

// Concurrent duplicates inside the process share one run and reach the
// store once.
func TestDoCollapsesConcurrentCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := &faultyStore{Store: newStore(t)}
		r := newRunner(t, store)
		release := make(chan struct{})
		var runs atomic.Int64
		fn := func(context.Context) (receipt, error) {
			runs.Add(1)
			<-release
			return receipt{ID: "ch_1"}, nil
		}
		const n = 50
		results := make([]receipt, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { results[i], errs[i] = idempotency.Do(context.Background(), r, "k", fn) })
		}
		synctest.Wait() // all 50 are blocked: one in fn, the others on its flight
		close(release)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || results[i].ID != "ch_1" {
				t.Fatalf("caller %d: %+v, %v", i, results[i], errs[i])
			}
		}
		if runs.Load() != 1 || store.claims.Load() != 1 {
			t.Fatalf("fn ran %d times and the store saw %d claims; want 1 and 1", runs.Load(), store.claims.Load())
		}
		// Each caller got its own copy.
		results[0].ID = "changed"
		if results[1].ID != "ch_1" {
			t.Fatal("callers share one result value")
		}
	})
}

func TestDoFingerprint(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRunner(t, newStore(t), idempotency.WithWait(time.Minute))
		ctx := context.Background()
		release := make(chan struct{})
		done := make(chan error)
		go func() {
			_, err := idempotency.Do(ctx, r, "k", func(context.Context) (string, error) {
				<-release
				return "for input A", nil
			}, idempotency.WithFingerprint([]byte("A")))
			done <- err
		}()
		synctest.Wait()
		// A concurrent call with another input does not share A's flight:
		// it reaches the store and is told the key belongs to other input.
		ran := false
		_, err := idempotency.Do(ctx, r, "k", func(context.Context) (string, error) {
			ran = true
			return "for input B", nil
		}, idempotency.WithFingerprint([]byte("B")))
		if !errors.Is(err, idempotency.ErrFingerprintMismatch) || ran {
			t.Fatalf("Do with input B while A runs: err %v, ran %v; want ErrFingerprintMismatch without running", err, ran)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got, err := idempotency.Do(ctx, r, "k", func(context.Context) (string, error) { return "rerun", nil }, idempotency.WithFingerprint([]byte("A")))
		if err != nil || got != "for input A" {
			t.Fatalf("replay with input A = %q, %v", got, err)
		}
		_, err = idempotency.Do(ctx, r, "k", func(context.Context) (string, error) { return "rerun", nil }, idempotency.WithFingerprint([]byte("B")))
		if !errors.Is(err, idempotency.ErrFingerprintMismatch) {
			t.Fatalf("Do with input B after A completed: %v; want ErrFingerprintMismatch", err)
		}
	})
}

func TestDoErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	errDeclined := errors.New("card declined")
	errFlaky := errors.New("connection reset")

	t.Run("error releases", func(t *testing.T) {
		t.Parallel()
		r := newRunner(t, newStore(t))
		runs := 0
		fn := func(context.Context) (int, error) {
			runs++
			if runs == 1 {
				return 0, errFlaky
			}
			return 7, nil
		}
		if _, err := idempotency.Do(ctx, r, "k", fn); !errors.Is(err, errFlaky) {
			t.Fatalf("first Do: %v; want %v", err, errFlaky)
		}
		if got, err := idempotency.Do(ctx, r, "k", fn); err != nil || got != 7 || runs != 2 {
			t.Fatalf("retry: %d, %v after %d runs; want 7 after 2", got, err, runs)
		}
	})

	t.Run("final error stored", func(t *testing.T) {
		t.Parallel()
		r := newRunner(t, newStore(t))
		runs := 0
		fn := func(context.Context) (int, error) {
			runs++
			return 0, idempotency.Final(errDeclined)
		}
		_, err := idempotency.Do(ctx, r, "k", fn)
		if !errors.Is(err, errDeclined) || !isFinal(err) {
			t.Fatalf("first Do: %v; want the final %v", err, errDeclined)
		}
		_, err = idempotency.Do(ctx, r, "k", fn)
		var fe *idempotency.FinalError
		if !errors.As(err, &fe) || !fe.Replayed || err.Error() != errDeclined.Error() || runs != 1 {
			t.Fatalf("replay: %#v after %d runs; want a replayed FinalError %q after 1", err, runs, errDeclined)
		}
		if idempotency.Final(nil) != nil {
			t.Fatal("Final(nil) != nil")
		}
		if twice := idempotency.Final(idempotency.Final(errDeclined)); !errors.As(twice, &fe) || fe.Err != errDeclined {
			t.Fatalf("Final(Final(err)) = %#v", twice)
		}
	})

	t.Run("panic releases", func(t *testing.T) {
		t.Parallel()
		r := newRunner(t, newStore(t))
		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Fatalf("recovered %v; want the panic of fn", p)
				}
			}()
			_, _ = idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { panic("boom") })
			t.Fatal("Do returned after fn panicked")
		}()
		if got, err := idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { return 1, nil }); err != nil || got != 1 {
			t.Fatalf("after the panic: %d, %v; want a new run", got, err)
		}
	})

	t.Run("result not stored", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			store := &faultyStore{Store: newStore(t), failN: 100}
			r := newRunner(t, store)
			got, err := idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { return 5, nil })
			if got != 5 || !errors.Is(err, idempotency.ErrNotStored) || !errors.Is(err, errStoreDown) || !strings.Contains(err.Error(), `"k"`) {
				t.Fatalf("Do with a failing Complete = %d, %v; want 5 and ErrNotStored for \"k\"", got, err)
			}
			if n := store.completes.Load(); n < 2 || n > 10 {
				t.Fatalf("Complete tried %d times; want a few retries, bounded", n)
			}
		})
	})

	t.Run("store fails", func(t *testing.T) {
		t.Parallel()
		r := newRunner(t, &faultyStore{Store: newStore(t), failClaim: true})
		ran := false
		_, err := idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { ran = true; return 1, nil })
		if !errors.Is(err, errStoreDown) || ran {
			t.Fatalf("Do with a failing store: %v, ran %v; want the store's error, not run", err, ran)
		}
	})

	t.Run("store full", func(t *testing.T) {
		t.Parallel()
		r := newRunner(t, newStore(t, idempotency.WithMaxRecords(1)))
		if _, err := idempotency.Do(ctx, r, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := idempotency.Do(ctx, r, "b", func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, idempotency.ErrStoreFull) {
			t.Fatalf("Do of a new key in a full store: %v; want ErrStoreFull", err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		store := newStore(t)
		r := newRunner(t, store)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ran := false
		if _, err := idempotency.Do(cctx, r, "k", func(context.Context) (int, error) { ran = true; return 1, nil }); !errors.Is(err, context.Canceled) || ran {
			t.Fatalf("Do with a cancelled context: %v, ran %v", err, ran)
		}
		if _, err := store.Get(ctx, "k"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("a cancelled Do left a record: %v", err)
		}
	})

	t.Run("bad call", func(t *testing.T) {
		t.Parallel()
		r := newRunner(t, newStore(t))
		if _, err := idempotency.Do[int](ctx, nil, "k", func(context.Context) (int, error) { return 1, nil }); err == nil {
			t.Error("Do with a nil Runner returned no error")
		}
		if _, err := idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { return 1, nil }, idempotency.WithCodec(nil)); err == nil {
			t.Error("Do with a bad option returned no error")
		}
		if _, err := idempotency.Do(ctx, r, "k", func(context.Context) (chan int, error) { return make(chan int), nil }); err == nil {
			t.Error("Do with a result the codec cannot encode returned no error")
		}
	})
}

// A caller held by work in another process (another Runner on the same
// store) waits for its result, within the bound, then gives up.
func TestDoWaitsForWorkElsewhere(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := newStore(t)
		here := newRunner(t, store, idempotency.WithWait(5*time.Second))
		elsewhere := newRunner(t, store)
		ctx := context.Background()

		var wg sync.WaitGroup
		wg.Go(func() {
			_, _ = idempotency.Do(ctx, elsewhere, "fast", func(context.Context) (string, error) {
				time.Sleep(2 * time.Second)
				return "done elsewhere", nil
			})
		})
		wg.Go(func() {
			_, _ = idempotency.Do(ctx, elsewhere, "slow", func(context.Context) (string, error) {
				time.Sleep(time.Minute)
				return "too late", nil
			})
		})
		synctest.Wait()
		ran := false
		got, err := idempotency.Do(ctx, here, "fast", func(context.Context) (string, error) { ran = true; return "here", nil })
		if err != nil || got != "done elsewhere" || ran {
			t.Fatalf("Do while held elsewhere = %q, %v, ran %v; want the other's result", got, err, ran)
		}
		start := time.Now()
		_, err = idempotency.Do(ctx, here, "slow", func(context.Context) (string, error) { ran = true; return "here", nil })
		if !errors.Is(err, idempotency.ErrInProgress) || ran {
			t.Fatalf("Do while held elsewhere for long: %v, ran %v; want ErrInProgress", err, ran)
		}
		if waited := time.Since(start); waited < 5*time.Second || waited > 6*time.Second {
			t.Fatalf("gave up after %v; want the 5s wait", waited)
		}
		_, err = idempotency.Do(ctx, here, "slow", func(context.Context) (string, error) { return "", nil }, idempotency.WithWait(0))
		if !errors.Is(err, idempotency.ErrInProgress) {
			t.Fatalf("Do without wait while held: %v; want ErrInProgress", err)
		}
		wg.Wait()
	})
}

// A caller waiting on another caller's flight in the process is not held by
// it once its own context ends.
func TestDoFollowerContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRunner(t, newStore(t))
		release := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = idempotency.Do(context.Background(), r, "k", func(context.Context) (int, error) { <-release; return 1, nil })
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { return 2, nil }); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("follower with a deadline: %v; want DeadlineExceeded", err)
		}
		close(release)
		<-done
	})
}

// A caller that shared a run that panicked gets an error; the panic itself
// goes on in the caller that ran the work.
func TestDoSharedPanic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newRunner(t, newStore(t))
		release := make(chan struct{})
		leaderPanic := make(chan any)
		go func() {
			defer func() { leaderPanic <- recover() }()
			_, _ = idempotency.Do(context.Background(), r, "k", func(context.Context) (int, error) {
				<-release
				panic("boom")
			})
		}()
		synctest.Wait()
		followerErr := make(chan error)
		go func() {
			_, err := idempotency.Do(context.Background(), r, "k", func(context.Context) (int, error) { return 1, nil })
			followerErr <- err
		}()
		synctest.Wait()
		close(release)
		if p := <-leaderPanic; p != "boom" {
			t.Fatalf("leader recovered %v; want boom", p)
		}
		if err := <-followerErr; err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Fatalf("follower: %v; want an error saying the shared run panicked", err)
		}
	})
}

// The lease of a claim is renewed while fn runs longer than the lease; a
// claim whose holder died is taken over and the dead holder's late
// completion is rejected.
func TestDoLease(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := newStore(t)
		r := newRunner(t, store, idempotency.WithLease(time.Second))
		ctx := context.Background()
		done := make(chan error)
		go func() {
			_, err := idempotency.Do(ctx, r, "slow", func(context.Context) (int, error) {
				time.Sleep(10 * time.Second)
				return 1, nil
			})
			done <- err
		}()
		time.Sleep(5 * time.Second) // five leases
		if c, err := store.Claim(ctx, "slow", "", time.Second); err != nil || c.Acquired {
			t.Fatalf("claim of a running key after five leases = %+v, %v; want it held (renewed)", c, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		// A holder that died: claimed, never renewed.
		dead, err := store.Claim(ctx, "orphan", "", time.Second)
		if err != nil || !dead.Acquired {
			t.Fatal(dead, err)
		}
		time.Sleep(2 * time.Second)
		got, err := idempotency.Do(ctx, r, "orphan", func(context.Context) (int, error) { return 2, nil })
		if err != nil || got != 2 {
			t.Fatalf("Do on an abandoned claim = %d, %v; want it taken over", got, err)
		}
		if err := store.Complete(ctx, "orphan", dead.Token, []byte("late"), time.Hour); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("the dead holder's late Complete: %v; want ErrLeaseLost", err)
		}
	})
}

// Renewals outlive reuse: after short runs (whose renewal state the Runner
// reuses) and a long one (whose renewal fired), a long run is still renewed.
func TestDoLeaseRenewedAfterShortRuns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := newStore(t)
		r := newRunner(t, store, idempotency.WithLease(time.Second))
		ctx := context.Background()
		short := func(key string) {
			t.Helper()
			if _, err := idempotency.Do(ctx, r, key, func(context.Context) (int, error) { return 1, nil }); err != nil {
				t.Fatal(err)
			}
		}
		long := func(key string) {
			t.Helper()
			done := make(chan error)
			go func() {
				_, err := idempotency.Do(ctx, r, key, func(context.Context) (int, error) {
					time.Sleep(5 * time.Second)
					return 1, nil
				})
				done <- err
			}()
			time.Sleep(3 * time.Second) // three leases
			if c, err := store.Claim(ctx, key, "", time.Second); err != nil || c.Acquired {
				t.Fatalf("claim of running key %s after three leases = %+v, %v; want it held (renewed)", key, c, err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			short(fmt.Sprint("short", i))
		}
		long("long1")
		for i := range 3 {
			short(fmt.Sprint("again", i))
		}
		long("long2")
	})
}

// Renewals that fail let the lease run out: another claimer takes the key
// over, and the first run's result is returned with ErrNotStored that
// says the lease was lost; both are logged.
func TestDoRenewalFails(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := &faultyStore{Store: newStore(t), failRenew: true}
		logs := &logRecorder{}
		r := newRunner(t, store, idempotency.WithLease(time.Second), idempotency.WithLogger(slog.New(logs)))
		ctx := context.Background()
		done := make(chan error)
		go func() {
			got, err := idempotency.Do(ctx, r, "k", func(context.Context) (int, error) {
				time.Sleep(5 * time.Second)
				return 1, nil
			})
			if got != 1 {
				t.Errorf("Do returned %d; want the run's result", got)
			}
			done <- err
		}()
		time.Sleep(2 * time.Second)
		c, err := store.Claim(ctx, "k", "", time.Hour)
		if err != nil || !c.Acquired {
			t.Fatalf("claim after the unrenewed lease ran out = %+v, %v; want a takeover", c, err)
		}
		if err := <-done; !errors.Is(err, idempotency.ErrNotStored) || !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("Do after losing its lease: %v; want ErrNotStored wrapping ErrLeaseLost", err)
		}
		if logs.count(slog.LevelWarn) == 0 || logs.count(slog.LevelError) != 1 {
			t.Fatalf("logged %d warnings and %d errors; want the failed renewals and one lost result", logs.count(slog.LevelWarn), logs.count(slog.LevelError))
		}
	})
}

func TestDoTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := &fakeTxStore{MemoryStore: newStore(t)}
	r := newRunner(t, store, idempotency.WithTransaction())

	_, err := idempotency.Do(ctx, r, "k", func(ctx context.Context) (int, error) {
		txWrite(t, ctx, "attempt 1")
		return 0, errors.New("flaky")
	})
	if err == nil || len(store.writes()) != 0 || store.rolledBack() != 1 {
		t.Fatalf("failed work: err %v, committed %q, rollbacks %d; want nothing committed", err, store.writes(), store.rolledBack())
	}
	got, err := idempotency.Do(ctx, r, "k", func(ctx context.Context) (int, error) {
		txWrite(t, ctx, "attempt 2")
		return 9, nil
	})
	if err != nil || got != 9 || strings.Join(store.writes(), ",") != "attempt 2" {
		t.Fatalf("work that succeeded = %d, %v, committed %q", got, err, store.writes())
	}
	got, err = idempotency.Do(ctx, r, "k", func(ctx context.Context) (int, error) {
		txWrite(t, ctx, "attempt 3")
		return 10, nil
	})
	if err != nil || got != 9 || len(store.writes()) != 1 {
		t.Fatalf("replay = %d, %v, committed %q", got, err, store.writes())
	}
	if tx, err := idempotency.TxFrom(ctx); tx != nil || !errors.Is(err, idempotency.ErrNoTx) {
		t.Fatalf("TxFrom of a context without a transaction = %v, %v; want nil and ErrNoTx", tx, err)
	}
}
