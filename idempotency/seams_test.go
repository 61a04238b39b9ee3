package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
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
