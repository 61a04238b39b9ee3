package benchmarks_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

// BenchmarkIdempotencyMiddleware serves a POST in process (no network):
// the bare handler (the baseline), the middleware on the memory store with a
// new key per request ("first": claim, run, store), and with one key for all
// requests ("replay": the stored response, the handler does not run). The
// store is unbounded (WithMaxRecords(0), WithMaxBytes(0)): its default
// bounds (100 000 records, 64 MiB) would refuse a long run's new keys.
//
// No idempotency middleware for net/http from the Go ecosystem is compared:
// the one in wide use is Fiber's (fasthttp, not net/http), and the net/http
// ones found are single-author projects that the module proxy does not serve.
func BenchmarkIdempotencyMiddleware(b *testing.B) {
	const body = `{"amount":4200,"currency":"EUR"}`
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"payment":"pay_1"}`)
	})
	serve := func(b *testing.B, h http.Handler, key func(n int) string, want int) {
		b.Helper()
		benchcpu.Report(b, func() {
			n := 0
			for b.Loop() {
				n++
				req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(body))
				req.Header.Set("Idempotency-Key", key(n))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != want {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
	middleware := func(b *testing.B) func(http.Handler) http.Handler {
		store, err := idempotency.NewMemoryStore(idempotency.WithMaxRecords(0), idempotency.WithMaxBytes(0))
		if err != nil {
			b.Fatal(err)
		}
		mw, err := idempotency.Middleware(store)
		if err != nil {
			b.Fatal(err)
		}
		return mw
	}
	b.Run("bare", func(b *testing.B) {
		serve(b, handler, strconv.Itoa, http.StatusCreated)
	})
	b.Run("steadfast/first", func(b *testing.B) {
		serve(b, middleware(b)(handler), strconv.Itoa, http.StatusCreated)
	})
	b.Run("steadfast/replay", func(b *testing.B) {
		serve(b, middleware(b)(handler), func(int) string { return "same-key" }, http.StatusCreated)
	})
}
