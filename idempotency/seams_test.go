package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// Tests of issue 12 ("seams of idempotency"), items that need no database.

// Item 5: the query string is part of the fingerprint by default, so one
// key reused for POST /transfer?to=a and ?to=b gets 422, not the first
// answer; WithoutQuery leaves it out for clients that add parameters of
// their own.
func TestFingerprintIncludesQuery(t *testing.T) {
	t.Parallel()
	h := &counting{status: http.StatusCreated}
	srv := newMiddleware(t, newStore(t))(h)
	if w := serve(srv, request("/transfer?to=a", "k", `{"cents":100}`)); w.Code != http.StatusCreated {
		t.Fatalf("first transfer: %d", w.Code)
	}
	if w := serve(srv, request("/transfer?to=a", "k", `{"cents":100}`)); w.Header().Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("same query: %d, not replayed", w.Code)
	}
	wantProblem(t, serve(srv, request("/transfer?to=b", "k", `{"cents":100}`)), idempotency.ProblemKeyMismatch)
	if h.runs.Load() != 1 {
		t.Fatalf("handler ran %d times; want 1", h.runs.Load())
	}

	// Bodies over the pooled size take the streaming path: the same rule.
	big := strings.Repeat("b", 100<<10)
	serve(srv, request("/transfer?to=a", "big", big))
	wantProblem(t, serve(srv, request("/transfer?to=b", "big", big)), idempotency.ProblemKeyMismatch)

	h2 := &counting{status: http.StatusCreated}
	lax := newMiddleware(t, newStore(t), idempotency.WithoutQuery())(h2)
	serve(lax, request("/transfer?utm=1", "k", `{"cents":100}`))
	if w := serve(lax, request("/transfer?utm=2", "k", `{"cents":100}`)); w.Header().Get(idempotency.ReplayedHeader) != "true" || h2.runs.Load() != 1 {
		t.Fatalf("WithoutQuery, another query: %d, replayed %q, %d runs; want the replay", w.Code, w.Header().Get(idempotency.ReplayedHeader), h2.runs.Load())
	}
}

// Item 6: a scoped key fits every store however long the route (the path,
// with the middleware around a whole mux) or the scope: the parts beyond a
// fixed length are hashed, by the middleware and by ScopedKey alike.
func TestScopedKeyFitsEveryStore(t *testing.T) {
	t.Parallel()
	long := "/" + strings.Repeat("segment/", 400) // 3,201 bytes
	tenant := strings.Repeat("t", 2000)
	key := strings.Repeat("k", 255)
	sk := idempotency.ScopedKey(tenant, http.MethodPost, long, key)
	if len(sk) > 1024 {
		t.Fatalf("ScopedKey of a %d-byte route and a %d-byte scope is %d bytes; want at most 1024", len(long), len(tenant), len(sk))
	}
	if sk == idempotency.ScopedKey(tenant, http.MethodPost, long+"x", key) || sk == idempotency.ScopedKey(tenant+"x", http.MethodPost, long, key) {
		t.Fatal("ScopedKey of different long parts are equal")
	}
	store := newStore(t)
	h := &counting{status: http.StatusCreated}
	srv := newMiddleware(t, store, idempotency.WithScope(func(*http.Request) string { return tenant }))(h)
	if w := serve(srv, request(long, key, "b")); w.Code != http.StatusCreated {
		t.Fatalf("long path: %d %s; want 201", w.Code, w.Body)
	}
	if w := serve(srv, request(long, key, "b")); w.Header().Get(idempotency.ReplayedHeader) != "true" || h.runs.Load() != 1 {
		t.Fatalf("long path again: %d, replayed %q; want the replay", w.Code, w.Header().Get(idempotency.ReplayedHeader))
	}
	if rec, err := store.Get(t.Context(), sk); err != nil || rec.Status != idempotency.StatusCompleted {
		t.Fatalf("Get(ScopedKey(...)) = %+v, %v; want the middleware's record", rec, err)
	}
	// Short parts are kept as they are: readable in the store.
	if got := idempotency.ScopedKey("acme", "POST", "/orders", "k1"); got != "4:acme4:POST7:/ordersk1" {
		t.Fatalf("ScopedKey of short parts = %q", got)
	}
}

// Item 6: the memory store holds keys to the rule every store holds to: 1
// to 1024 bytes, fingerprints of at most 255.
func TestMemoryStoreKeyRule(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.Claim(ctx, strings.Repeat("k", 1024), strings.Repeat("f", 255), time.Minute); err != nil {
		t.Fatalf("1024-byte key: %v", err)
	}
	if _, err := s.Claim(ctx, strings.Repeat("k", 1025), "fp", time.Minute); !errors.Is(err, idempotency.ErrTooLarge) {
		t.Fatalf("1025-byte key: %v; want ErrTooLarge", err)
	}
	if _, err := s.Claim(ctx, "k", strings.Repeat("f", 256), time.Minute); !errors.Is(err, idempotency.ErrTooLarge) {
		t.Fatalf("256-byte fingerprint: %v; want ErrTooLarge", err)
	}
	if _, err := s.Claim(ctx, "", "fp", time.Minute); !errors.Is(err, idempotency.ErrInvalid) {
		t.Fatalf("empty key: %v; want ErrInvalid", err)
	}
	r, err := idempotency.NewRunner(s)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if _, err := idempotency.Do(ctx, r, strings.Repeat("k", 1<<20), func(context.Context) (int, error) { ran = true; return 1, nil }); !errors.Is(err, idempotency.ErrTooLarge) || ran {
		t.Fatalf("Do with a 1 MiB key: ran %v, %v; want ErrTooLarge and no run", ran, err)
	}
}

// refusingStore refuses every claim as the client's fault.
type refusingStore struct {
	idempotency.Store
	err error
}

func (s refusingStore) Claim(context.Context, string, string, time.Duration) (idempotency.Claim, error) {
	return idempotency.Claim{}, s.err
}

// Item 6: a store's ErrTooLarge or ErrInvalid is the client's error: 400
// with a problem body, never 503, and never a run unprotected with
// WithFailOpen.
func TestStoreRefusalIsClientError(t *testing.T) {
	t.Parallel()
	for _, sentinel := range []error{idempotency.ErrTooLarge, idempotency.ErrInvalid} {
		for _, failOpen := range []bool{false, true} {
			h := &counting{}
			var opts []idempotency.Option
			if failOpen {
				opts = append(opts, idempotency.WithFailOpen())
			}
			store := refusingStore{Store: newStore(t), err: fmt.Errorf("somestore: %w: key is 2000 bytes", sentinel)}
			srv := newMiddleware(t, store, opts...)(h)
			d := wantProblem(t, serve(srv, request("/x", "k", "b")), idempotency.ProblemKeyInvalid)
			if !strings.Contains(d.Detail, "2000 bytes") || h.runs.Load() != 0 {
				t.Fatalf("%v (fail open %v): detail %q, %d runs; want the store's reason and no run", sentinel, failOpen, d.Detail, h.runs.Load())
			}
		}
	}
	// A key source's key longer than 255 bytes is refused like a header's.
	src := idempotency.WithKeySource(func(*http.Request, []byte) (string, error) { return strings.Repeat("k", 256), nil })
	h := &counting{}
	wantProblem(t, serve(newMiddleware(t, newStore(t), src)(h), request("/x", "", "b")), idempotency.ProblemKeyInvalid)
	if h.runs.Load() != 0 {
		t.Fatal("the handler ran with a 256-byte key")
	}
}

// Item 7: the memory store is bounded by bytes as well as records: by
// default, 80 completed records of 1 MiB do not all fit (they used to: 100
// 000 records of 1 MiB were 100 GiB); what does not fit is refused
// (ErrStoreFull for a new key, ErrTooLarge for a response), never evicted.
func TestMemoryStoreBoundedByBytes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	resp := make([]byte, 1<<20)
	held := 0
	for i := range 80 {
		k := fmt.Sprint("k", i)
		c, err := s.Claim(ctx, k, "fp", time.Hour)
		if errors.Is(err, idempotency.ErrStoreFull) {
			break
		}
		if err != nil || !c.Acquired {
			t.Fatalf("claim %d: %+v, %v", i, c, err)
		}
		if err := s.Complete(ctx, k, c.Token, resp, time.Hour); err != nil {
			if !errors.Is(err, idempotency.ErrTooLarge) {
				t.Fatalf("complete %d: %v; want nil or ErrTooLarge", i, err)
			}
			break
		}
		held++
	}
	if held == 80 || held < 32 {
		t.Fatalf("the default store kept %d responses of 1 MiB; want a bound of tens of MiB", held)
	}
	for i := range held {
		if r, err := s.Get(ctx, fmt.Sprint("k", i)); err != nil || len(r.Response) != 1<<20 {
			t.Fatalf("record %d was evicted or cut: %v", i, err)
		}
	}
}

// Item 7: one scope may hold at most its share of the store; the others,
// and keys without a scope, still find room.
func TestMemoryStoreScopeShare(t *testing.T) {
	t.Parallel()
	s := newStore(t, idempotency.WithMaxRecords(100), idempotency.WithMaxScopeShare(0.1))
	ctx := t.Context()
	for i := range 10 {
		if c, err := s.Claim(ctx, idempotency.ScopedKey("noisy", "POST", "/x", fmt.Sprint(i)), "fp", time.Hour); err != nil || !c.Acquired {
			t.Fatalf("noisy claim %d: %+v, %v", i, c, err)
		}
	}
	_, err := s.Claim(ctx, idempotency.ScopedKey("noisy", "POST", "/x", "10"), "fp", time.Hour)
	if !errors.Is(err, idempotency.ErrStoreFull) {
		t.Fatalf("the 11th claim of a scope with a tenth of 100 records: %v; want ErrStoreFull", err)
	}
	for _, k := range []string{idempotency.ScopedKey("quiet", "POST", "/x", "1"), idempotency.ScopedKey("", "POST", "/x", "1"), "do-key"} {
		if c, err := s.Claim(ctx, k, "fp", time.Hour); err != nil || !c.Acquired {
			t.Fatalf("claim of %q while another scope is at its share: %+v, %v", k, c, err)
		}
	}
	if _, err := idempotency.NewMemoryStore(idempotency.WithMaxScopeShare(0)); err == nil || !strings.Contains(err.Error(), "WithMaxScopeShare") {
		t.Fatalf("WithMaxScopeShare(0): %v; want an error naming it", err)
	}
	if _, err := idempotency.NewMemoryStore(idempotency.WithMaxBytes(-1)); err == nil || !strings.Contains(err.Error(), "WithMaxBytes") {
		t.Fatalf("WithMaxBytes(-1): %v; want an error naming it", err)
	}
}

// Item 7: the full store's answer says when room will really free up: when
// the earliest record it holds expires (it used to say 1 second, always).
func TestMemoryStoreFullRetryAfter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := newStore(t, idempotency.WithMaxRecords(2))
		ctx := t.Context()
		c, _ := s.Claim(ctx, idempotency.ScopedKey("", "POST", "/x", "done"), "fp", time.Minute)
		if err := s.Complete(ctx, idempotency.ScopedKey("", "POST", "/x", "done"), c.Token, []byte("r"), 10*time.Minute); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Claim(ctx, idempotency.ScopedKey("", "POST", "/x", "running"), "fp", 5*time.Minute); err != nil || !c.Acquired {
			t.Fatalf("claim = %+v, %v", c, err)
		}
		srv := newMiddleware(t, s, idempotency.WithLease(5*time.Minute))(&counting{})
		w := serve(srv, request("/x", "new", "b"))
		wantProblem(t, w, idempotency.ProblemStoreFull)
		if got := w.Header().Get("Retry-After"); got != "300" {
			t.Fatalf("Retry-After %q; want 300 (the running claim's lease, the earliest to end)", got)
		}
	})
}

// smallStore refuses, as too large, results over 64 bytes, and counts the
// calls of Complete.
type smallStore struct {
	idempotency.Store
	completes atomic.Int64
}

func (s *smallStore) Complete(ctx context.Context, key string, token int64, resp []byte, retention time.Duration) error {
	s.completes.Add(1)
	if len(resp) > 64 {
		return fmt.Errorf("smallstore: %w: %d bytes", idempotency.ErrTooLarge, len(resp))
	}
	return s.Store.Complete(ctx, key, token, resp, retention)
}

// Item 8: a result the store refuses for good (ErrTooLarge) is not retried
// and the work does not run again: Do keeps a "not storable" marker, so
// the call that ran returns its result with ErrNotStored, and every later
// call gets ErrNotStored without a run (it used to retry, keep the claim
// for its lease, then run the work again).
func TestDoResultNotStorable(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := &smallStore{Store: newStore(t)}
		r := newRunner(t, store, idempotency.WithLease(time.Minute))
		ctx := t.Context()
		runs := 0
		fn := func(context.Context) (string, error) { runs++; return strings.Repeat("x", 100), nil }
		got, err := idempotency.Do(ctx, r, "k", fn)
		if got != strings.Repeat("x", 100) || !errors.Is(err, idempotency.ErrNotStored) || !errors.Is(err, idempotency.ErrTooLarge) {
			t.Fatalf("the run: %q, %v; want its result with ErrNotStored and ErrTooLarge", got, err)
		}
		if n := store.completes.Load(); n != 2 {
			t.Fatalf("Complete called %d times; want 2 (the refused result, then the marker)", n)
		}
		time.Sleep(2 * time.Minute) // past the lease
		got, err = idempotency.Do(ctx, r, "k", fn)
		if runs != 1 || got != "" || !errors.Is(err, idempotency.ErrNotStored) {
			t.Fatalf("a later call: %q, %v, %d runs; want ErrNotStored and no rerun", got, err, runs)
		}
	})
}

// Item 8: a caller that joins another's flight decodes the shared result
// with its own codec, exactly as a later replay would: a caller with
// another codec gets a decoding error, never a value decoded for someone
// else. Every caller of a key must use one codec (and result type).
func TestDoFlightCodecRule(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	gobRunner := newRunner(t, store, idempotency.WithCodec(gobCodec{}))
	ctx := t.Context()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := idempotency.Do(ctx, gobRunner, "k", func(context.Context) (receipt, error) {
			close(started)
			<-release
			return receipt{ID: "ch_1", Amount: 3}, nil
		})
		done <- err
	}()
	<-started
	joined := make(chan error)
	go func() {
		// The same Runner, another codec for this call: it joins the
		// flight.
		v, err := idempotency.Do(ctx, gobRunner, "k", func(context.Context) (receipt, error) {
			t.Error("the joiner ran the work")
			return receipt{}, nil
		}, idempotency.WithCodec(idempotency.JSONCodecForTest))
		if err == nil {
			t.Errorf("the JSON joiner of a gob flight got %+v; want a decoding error", v)
		}
		joined <- err
	}()
	time.Sleep(10 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-joined; err == nil || !strings.Contains(err.Error(), "decoding") {
		t.Fatalf("joiner with another codec: %v; want a decoding error", err)
	}
	if v, err := idempotency.Do(ctx, gobRunner, "k", func(context.Context) (receipt, error) { return receipt{}, nil }); err != nil || v.ID != "ch_1" {
		t.Fatalf("replay with the run's codec: %+v, %v", v, err)
	}
}
