package idempotency_test

import (
	"net/http"
	"strings"
	"testing"

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
