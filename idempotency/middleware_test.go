package idempotency_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

func newMiddleware(t testing.TB, store idempotency.Store, opts ...idempotency.Option) func(http.Handler) http.Handler {
	t.Helper()
	mw, err := idempotency.Middleware(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

// request builds a POST to target with body and, unless key is empty, an
// Idempotency-Key.
func request(target, key, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// counting is a handler that counts its runs and answers with status and a
// body that names the run.
type counting struct {
	runs   atomic.Int64
	status int
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.runs.Add(1)
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/1")
	w.Header().Set("Set-Cookie", "session=secret")
	w.Header().Set("X-Internal", "not for replay")
	status := c.status
	if status == 0 {
		status = http.StatusCreated
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"run":%d,"echo":%q}`, n, body)
}

// wantProblem checks that w is a problem+json response of type p.
func wantProblem(t *testing.T, w *httptest.ResponseRecorder, p idempotency.Problem) problemDetails {
	t.Helper()
	if w.Code != idempotency.ProblemStatus(p) {
		t.Fatalf("status %d, body %s; want %d (%s)", w.Code, w.Body, idempotency.ProblemStatus(p), p)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q; want application/problem+json", ct)
	}
	var d problemDetails
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	if d.Type != p || d.Status != idempotency.ProblemStatus(p) || d.Title == "" || d.Detail == "" {
		t.Fatalf("problem %+v; want type %s, status %d, a title and a detail", d, p, idempotency.ProblemStatus(p))
	}
	return d
}

func TestMiddlewareOptions(t *testing.T) {
	t.Parallel()
	mem := newStore(t)
	tests := []struct {
		name    string
		store   idempotency.Store
		opts    []idempotency.Option
		wantErr string
	}{
		{"defaults", mem, nil, ""},
		{"nil store", nil, nil, "nil store"},
		{"nil option", mem, []idempotency.Option{nil}, "option 0 is nil"},
		{"Set-Cookie stored", mem, []idempotency.Option{idempotency.WithStoredHeaders("Content-Type", "set-cookie")}, "WithStoredHeaders"},
		{"Authorization stored", mem, []idempotency.Option{idempotency.WithStoredHeaders("Authorization")}, "WithStoredHeaders"},
		{"empty header", mem, []idempotency.Option{idempotency.WithStoredHeaders("")}, "WithStoredHeaders"},
		{"body limit", mem, []idempotency.Option{idempotency.WithMaxBodyBytes(0)}, "WithMaxBodyBytes"},
		{"response limit", mem, []idempotency.Option{idempotency.WithMaxResponseBytes(-1)}, "WithMaxResponseBytes"},
		{"nil key source", mem, []idempotency.Option{idempotency.WithKeySource(nil)}, "WithKeySource"},
		{"nil scope", mem, []idempotency.Option{idempotency.WithScope(nil)}, "WithScope"},
		{"nil route", mem, []idempotency.Option{idempotency.WithRoute(nil)}, "WithRoute"},
		{"nil final", mem, []idempotency.Option{idempotency.WithFinalStatus(nil)}, "WithFinalStatus"},
		{"short lease", mem, []idempotency.Option{idempotency.WithLease(0)}, "WithLease"},
		{"transaction without TxStore", mem, []idempotency.Option{idempotency.WithTransaction()}, "WithTransaction"},
		{"transaction failing open", &fakeTxStore{MemoryStore: mem}, []idempotency.Option{idempotency.WithTransaction(), idempotency.WithFailOpen()}, "WithTransaction cannot be combined with WithFailOpen"},
		{"retention alone under the default lease", mem, []idempotency.Option{idempotency.WithRetention(time.Second)}, "WithRetention 1s must be longer than the lease (30s, WithLease's default)"},
		{"lease alone over the default retention", mem, []idempotency.Option{idempotency.WithLease(48 * time.Hour)}, "WithLease 48h0m0s must be shorter than the retention (24h0m0s, WithRetention's default)"},
		{"option of Do", mem, []idempotency.Option{idempotency.WithCodec(nil)}, "WithCodec applies to NewRunner and Do, not Middleware"},
		{"option of the memory store", mem, []idempotency.Option{idempotency.WithMaxRecords(1)}, "WithMaxRecords applies to NewMemoryStore, not Middleware"},
		{"zero max transaction", mem, []idempotency.Option{idempotency.WithMaxTxDuration(0)}, "WithMaxTxDuration"},
		{"all", &fakeTxStore{MemoryStore: mem}, []idempotency.Option{
			idempotency.WithTransaction(), idempotency.WithLease(time.Second), idempotency.WithRetention(time.Hour),
			idempotency.WithWait(time.Second), idempotency.WithStoreTimeout(time.Second), idempotency.WithOptionalKey(),
			idempotency.WithCanonicalJSON(), idempotency.WithoutQuery(), idempotency.WithMaxTxDuration(time.Minute),
			idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")),
			idempotency.WithLogger(slog.New(slog.DiscardHandler)),
		}, ""},
		{"all but a transaction, failing open", mem, []idempotency.Option{idempotency.WithFailOpen(), idempotency.WithOptionalKey()}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mw, err := idempotency.Middleware(tt.store, tt.opts...)
			if tt.wantErr == "" {
				if err != nil || mw == nil {
					t.Fatalf("Middleware = %v; want middleware", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Middleware error = %v; want one naming %s", err, tt.wantErr)
			}
		})
	}
}

// A replay gives back every value of every stored header field, in order,
// common values and others alike, and values that a later replay's writer
// changes do not leak into the next replay.
func TestMiddlewareReplayHeaderValues(t *testing.T) {
	t.Parallel()
	stored := map[string][]string{
		"Content-Type":     {"application/json"},
		"Cache-Control":    {"no-store", "max-age=0, must-revalidate", "private"},
		"Link":             {`</a>; rel="next"`, `</b>; rel="prev"`},
		"Content-Language": {"de-CH"},
		"Content-Encoding": {"gzip"},
		"Etag":             {`W/"1"`},
	}
	srv := newMiddleware(t, newStore(t))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name, vs := range stored {
			w.Header()[name] = append([]string(nil), vs...)
		}
		w.Header().Add("X-Not-Stored", "x")
		w.WriteHeader(http.StatusAccepted)
	}))
	serve(srv, request("/x", "k", "b"))
	for i := range 2 {
		w := serve(srv, request("/x", "k", "b"))
		if w.Code != http.StatusAccepted || w.Header().Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("replay %d: %d %v", i, w.Code, w.Header())
		}
		for name, want := range stored {
			if got := w.Header()[name]; !slices.Equal(got, want) {
				t.Errorf("replay %d: %s = %q; want %q", i, name, got, want)
			}
		}
		if _, ok := w.Header()["X-Not-Stored"]; ok {
			t.Errorf("replay %d carries X-Not-Stored", i)
		}
		// A writer may change the values it was given.
		for _, vs := range w.Header() {
			for j := range vs {
				vs[j] = "changed"
			}
		}
		w.Header()["Link"] = append(w.Header()["Link"], "appended")
	}
}

// First request runs the handler; a retry with the same key and body does
// not, and gets the identical status, body and allow-listed headers, plus
// Idempotent-Replayed: true.
func TestMiddlewareReplay(t *testing.T) {
	t.Parallel()
	h := &counting{}
	srv := newMiddleware(t, newStore(t))(h)
	first := serve(srv, request("/orders", "8e03978e-40d5-43e8-bc93-6894a57f9324", `{"sku":"A1"}`))
	if first.Code != http.StatusCreated || first.Header().Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("first: %d %v", first.Code, first.Header())
	}
	if first.Header().Get("Set-Cookie") == "" {
		t.Fatal("the first response lost its Set-Cookie: only replays drop it")
	}
	if got, want := first.Header().Get("Content-Length"), fmt.Sprint(first.Body.Len()); got != want {
		t.Fatalf("first response: Content-Length %q; want %s", got, want)
	}
	second := serve(srv, request("/orders", "8e03978e-40d5-43e8-bc93-6894a57f9324", `{"sku":"A1"}`))
	if n := h.runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times; want 1", n)
	}
	if second.Code != first.Code || second.Body.String() != first.Body.String() {
		t.Fatalf("replay %d %q; want %d %q", second.Code, second.Body, first.Code, first.Body)
	}
	for _, name := range []string{"Content-Type", "Location"} {
		if got, want := second.Header().Get(name), first.Header().Get(name); got != want {
			t.Errorf("replayed %s %q; want %q", name, got, want)
		}
	}
	for _, name := range []string{"Set-Cookie", "X-Internal"} {
		if got := second.Header().Get(name); got != "" {
			t.Errorf("replay carries %s: %q", name, got)
		}
	}
	if got := second.Header().Get(idempotency.ReplayedHeader); got != "true" {
		t.Errorf("Idempotent-Replayed = %q; want true", got)
	}
	// The same key, quoted as a Structured Field string, is the same key.
	third := serve(srv, request("/orders", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"sku":"A1"}`))
	if third.Body.String() != first.Body.String() || h.runs.Load() != 1 {
		t.Fatalf("quoted key: %d %q after %d runs; want the replay", third.Code, third.Body, h.runs.Load())
	}
}

// 50 concurrent requests with one key: exactly one execution; the others get
// 409 with Retry-After, or in wait mode the replayed response.
func TestMiddlewareConcurrent(t *testing.T) {
	t.Parallel()
	const n = 50
	t.Run("409", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			release := make(chan struct{})
			var runs atomic.Int64
			srv := newMiddleware(t, newStore(t))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				<-release
				w.WriteHeader(http.StatusCreated)
			}))
			first := make(chan *httptest.ResponseRecorder)
			go func() { first <- serve(srv, request("/pay", "k", "x")) }()
			synctest.Wait()
			codes := make([]*httptest.ResponseRecorder, n-1)
			var wg sync.WaitGroup
			for i := range codes {
				wg.Go(func() { codes[i] = serve(srv, request("/pay", "k", "x")) })
			}
			wg.Wait()
			close(release)
			if w := <-first; w.Code != http.StatusCreated {
				t.Fatalf("first: %d", w.Code)
			}
			for i, w := range codes {
				wantProblem(t, w, idempotency.ProblemInProgress)
				if w.Header().Get("Retry-After") == "" {
					t.Fatalf("409 %d has no Retry-After", i)
				}
			}
			if runs.Load() != 1 {
				t.Fatalf("handler ran %d times; want 1", runs.Load())
			}
		})
	})
	t.Run("wait", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			h := &counting{}
			slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(3 * time.Second)
				h.ServeHTTP(w, r)
			})
			srv := newMiddleware(t, newStore(t), idempotency.WithWait(10*time.Second))(slow)
			ws := make([]*httptest.ResponseRecorder, n)
			var wg sync.WaitGroup
			for i := range ws {
				wg.Go(func() { ws[i] = serve(srv, request("/pay", "k", "x")) })
			}
			wg.Wait()
			replayed := 0
			for i, w := range ws {
				if w.Code != http.StatusCreated || w.Body.String() != `{"run":1,"echo":"x"}` {
					t.Fatalf("request %d: %d %q; want the one run's response", i, w.Code, w.Body)
				}
				if w.Header().Get(idempotency.ReplayedHeader) == "true" {
					replayed++
				}
			}
			if h.runs.Load() != 1 || replayed != n-1 {
				t.Fatalf("handler ran %d times, %d replays; want 1 and %d", h.runs.Load(), replayed, n-1)
			}
		})
	})
}

// Same key, different body: 422 and the record unchanged. Same key on
// another route, method or tenant never replays the other's response.
func TestMiddlewareMismatchAndScope(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	orders, refunds := &counting{}, &counting{}
	mw := newMiddleware(t, store, idempotency.WithScope(func(r *http.Request) string { return r.Header.Get("X-Tenant") }))
	mux := http.NewServeMux()
	mux.Handle("POST /orders", mw(orders))
	mux.Handle("PUT /orders", mw(orders))
	mux.Handle("POST /refunds", mw(refunds))

	req := func(method, target, tenant, body string) *http.Request {
		r := request(target, "k1", body)
		r.Method = method
		r.Header.Set("X-Tenant", tenant)
		return r
	}
	first := serve(mux, req("POST", "/orders", "acme", "A"))
	skey := idempotency.ScopedKey("acme", "POST", "POST /orders", "k1")
	before, err := store.Get(context.Background(), skey)
	if err != nil {
		t.Fatalf("record under ScopedKey: %v", err)
	}

	wantProblem(t, serve(mux, req("POST", "/orders", "acme", "B")), idempotency.ProblemKeyMismatch)
	after, err := store.Get(context.Background(), skey)
	if err != nil || after.Fingerprint != before.Fingerprint || !bytes.Equal(after.Response, before.Response) || after.Token != before.Token {
		t.Fatalf("the record changed after a mismatch: %+v, %v", after, err)
	}
	if again := serve(mux, req("POST", "/orders", "acme", "A")); again.Body.String() != first.Body.String() {
		t.Fatalf("replay after the mismatch: %q; want %q", again.Body, first.Body)
	}

	for _, tt := range []struct{ name, method, target, tenant string }{
		{"another tenant", "POST", "/orders", "globex"},
		{"another route", "POST", "/refunds", "acme"},
		{"another method", "PUT", "/orders", "acme"},
	} {
		w := serve(mux, req(tt.method, tt.target, tt.tenant, "A"))
		if w.Code != http.StatusCreated || w.Header().Get(idempotency.ReplayedHeader) != "" {
			t.Fatalf("%s: %d %q replayed=%q; want a fresh run", tt.name, w.Code, w.Body, w.Header().Get(idempotency.ReplayedHeader))
		}
	}
	if orders.runs.Load() != 3 || refunds.runs.Load() != 1 {
		t.Fatalf("runs: orders %d, refunds %d; want 3 and 1", orders.runs.Load(), refunds.runs.Load())
	}
}

// Missing key: 400 on a required route, pass-through on an optional one.
// Two headers, a malformed quoted value, more than 255 characters: 400. A
// bare UUID and a quoted string are both accepted.
func TestMiddlewareKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		keys     []string
		optional bool
		want     idempotency.Problem // empty: the handler runs
	}{
		{"missing, required", nil, false, idempotency.ProblemKeyMissing},
		{"missing, optional", nil, true, ""},
		{"two headers", []string{"a", "b"}, false, idempotency.ProblemKeyInvalid},
		{"two headers, optional", []string{"a", "b"}, true, idempotency.ProblemKeyInvalid},
		{"malformed quoted", []string{`"abc`}, false, idempotency.ProblemKeyInvalid},
		{"quoted non-string", []string{`"a" "b"`}, false, idempotency.ProblemKeyInvalid},
		{"256 characters", []string{strings.Repeat("k", 256)}, false, idempotency.ProblemKeyInvalid},
		{"empty", []string{""}, false, idempotency.ProblemKeyInvalid},
		{"non-ASCII", []string{"ключ"}, false, idempotency.ProblemKeyInvalid},
		{"bare UUID", []string{"0b8a4d7e-8c1f-4d27-9b3a-3f2e1d0c9b8a"}, false, ""},
		{"quoted string", []string{`"any printable key, with spaces"`}, false, ""},
		{"255 characters", []string{strings.Repeat("k", 255)}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []idempotency.Option
			if tt.optional {
				opts = append(opts, idempotency.WithOptionalKey())
			}
			h := &counting{}
			srv := newMiddleware(t, newStore(t), opts...)(h)
			for range 2 {
				r := request("/orders", "", "body")
				for _, k := range tt.keys {
					r.Header.Add("Idempotency-Key", k)
				}
				w := serve(srv, r)
				if tt.want != "" {
					wantProblem(t, w, tt.want)
					continue
				}
				if w.Code != http.StatusCreated {
					t.Fatalf("%d %s; want the handler's 201", w.Code, w.Body)
				}
			}
			wantRuns := int64(0)
			switch {
			case tt.want != "":
			case tt.keys == nil:
				wantRuns = 2 // optional: passed through both times
			default:
				wantRuns = 1
			}
			if h.runs.Load() != wantRuns {
				t.Fatalf("handler ran %d times; want %d", h.runs.Load(), wantRuns)
			}
		})
	}
}

// A 5xx or a panic releases the claim: the retry runs the handler again. A
// 2xx or a 404 is replayed; 408, 409 and 429 are not stored.
func TestMiddlewareFinality(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		stored bool
	}{
		{200, true}, {201, true}, {204, true}, {303, true}, {400, true}, {404, true}, {422, true},
		{408, false}, {409, false}, {429, false}, {500, false}, {502, false}, {503, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			h := &counting{status: tt.status}
			srv := newMiddleware(t, newStore(t))(h)
			first := serve(srv, request("/x", "k", "b"))
			second := serve(srv, request("/x", "k", "b"))
			if first.Code != tt.status || second.Code != tt.status {
				t.Fatalf("statuses %d, %d; want %d", first.Code, second.Code, tt.status)
			}
			wantRuns := int64(2)
			if tt.stored {
				wantRuns = 1
			}
			if h.runs.Load() != wantRuns {
				t.Fatalf("handler ran %d times; want %d", h.runs.Load(), wantRuns)
			}
			if replayed := second.Header().Get(idempotency.ReplayedHeader) == "true"; replayed != tt.stored {
				t.Fatalf("second response replayed: %v; want %v", replayed, tt.stored)
			}
		})
	}
	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		var runs atomic.Int64
		srv := newMiddleware(t, newStore(t))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if runs.Add(1) == 1 {
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(http.StatusCreated)
		}))
		func() {
			defer func() {
				if p := recover(); p != http.ErrAbortHandler {
					t.Fatalf("recovered %v; want the handler's panic to go on", p)
				}
			}()
			serve(srv, request("/x", "k", "b"))
		}()
		if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusCreated || runs.Load() != 2 {
			t.Fatalf("retry after a panic: %d after %d runs; want a new run", w.Code, runs.Load())
		}
	})
	t.Run("custom", func(t *testing.T) {
		t.Parallel()
		h := &counting{status: http.StatusNotFound}
		srv := newMiddleware(t, newStore(t), idempotency.WithFinalStatus(func(s int) bool { return s < 300 }))(h)
		serve(srv, request("/x", "k", "b"))
		serve(srv, request("/x", "k", "b"))
		if h.runs.Load() != 2 {
			t.Fatalf("a 404 that the predicate calls not final ran %d times; want 2", h.runs.Load())
		}
	})
}

// A handler slower than the lease is not taken over: the lease is renewed.
func TestMiddlewareLeaseRenewed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := &counting{}
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(10 * time.Second)
			h.ServeHTTP(w, r)
		})
		srv := newMiddleware(t, newStore(t), idempotency.WithLease(time.Second))(slow)
		done := make(chan *httptest.ResponseRecorder)
		go func() { done <- serve(srv, request("/x", "k", "b")) }()
		time.Sleep(5 * time.Second) // five leases
		wantProblem(t, serve(srv, request("/x", "k", "b")), idempotency.ProblemInProgress)
		if w := <-done; w.Code != http.StatusCreated {
			t.Fatalf("slow request: %d", w.Code)
		}
		if h.runs.Load() != 1 {
			t.Fatalf("handler ran %d times; want 1", h.runs.Load())
		}
	})
}

// A claim whose owner died (no renewal reaches the store, its lease
// expired) is taken over, and the old owner's late completion is rejected:
// its response is sent to its client, but the record is the new owner's.
func TestMiddlewareTakeover(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testMiddlewareTakeover)
}

func testMiddlewareTakeover(t *testing.T) {
	store := &faultyStore{Store: newStore(t), failRenew: true}
	logs := &logRecorder{}
	stuck := make(chan struct{})
	entered := make(chan struct{}, 1)
	var runs atomic.Int64
	srv := newMiddleware(t, store, idempotency.WithLease(time.Minute), idempotency.WithLogger(slog.New(logs)))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := runs.Add(1)
			if n == 1 {
				entered <- struct{}{}
				<-stuck // the first owner hangs: no renewal reaches the store in time
			}
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, "run %d", n)
		}))
	old := make(chan *httptest.ResponseRecorder)
	go func() { old <- serve(srv, request("/x", "k", "b")) }()
	<-entered
	time.Sleep(2 * time.Minute)
	if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusCreated || w.Body.String() != "run 2" {
		t.Fatalf("takeover: %d %q; want run 2", w.Code, w.Body)
	}
	close(stuck)
	if w := <-old; w.Body.String() != "run 1" {
		t.Fatalf("the old owner's client got %q; want its own response", w.Body)
	}
	if w := serve(srv, request("/x", "k", "b")); w.Body.String() != "run 2" {
		t.Fatalf("replay after the old owner finished: %q; want run 2 (its late completion rejected)", w.Body)
	}
	if logs.count(slog.LevelError) != 1 {
		t.Fatalf("logged %d errors; want 1 for the old owner's lost completion", logs.count(slog.LevelError))
	}
}

// completeHook runs after each successful Complete, before it returns.
type completeHook struct {
	idempotency.Store
	after func()
}

func (s *completeHook) Complete(ctx context.Context, key string, token int64, resp []byte, retention time.Duration) error {
	err := s.Store.Complete(ctx, key, token, resp, retention)
	if err == nil {
		s.after()
	}
	return err
}

// The response is stored before the claim is released: a duplicate that
// arrives in between replays.
func TestMiddlewareStoredBeforeRelease(t *testing.T) {
	t.Parallel()
	h := &counting{}
	hook := &completeHook{Store: newStore(t)}
	srv := newMiddleware(t, hook)(h)
	var between *httptest.ResponseRecorder
	hook.after = func() {
		hook.after = func() {}
		between = serve(srv, request("/x", "k", "b"))
	}
	first := serve(srv, request("/x", "k", "b"))
	if between == nil {
		t.Fatal("the hook did not run")
	}
	if between.Header().Get(idempotency.ReplayedHeader) != "true" || between.Body.String() != first.Body.String() || h.runs.Load() != 1 {
		t.Fatalf("duplicate between store and answer: %d %q; want the replay of %q", between.Code, between.Body, first.Body)
	}
}

// After the retention, the same key runs again.
func TestMiddlewareRetention(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := &counting{}
		srv := newMiddleware(t, newStore(t), idempotency.WithRetention(time.Hour))(h)
		serve(srv, request("/x", "k", "b"))
		time.Sleep(59 * time.Minute)
		serve(srv, request("/x", "k", "b"))
		if h.runs.Load() != 1 {
			t.Fatalf("ran %d times within the retention; want 1", h.runs.Load())
		}
		time.Sleep(2 * time.Minute)
		if w := serve(srv, request("/x", "k", "b")); w.Header().Get(idempotency.ReplayedHeader) != "" || h.runs.Load() != 2 {
			t.Fatalf("after the retention: replayed %q, %d runs; want a new run", w.Header().Get(idempotency.ReplayedHeader), h.runs.Load())
		}
	})
}

// The store returns errors: 503 and the handler never runs (or runs, when
// failing open). A full memory store answers 503 to a new key and still
// replays stored ones.
func TestMiddlewareStoreFailures(t *testing.T) {
	t.Parallel()
	t.Run("claim fails", func(t *testing.T) {
		t.Parallel()
		h := &counting{}
		srv := newMiddleware(t, &faultyStore{Store: newStore(t), failClaim: true}, idempotency.WithLogger(slog.New(slog.DiscardHandler)))(h)
		wantProblem(t, serve(srv, request("/x", "k", "b")), idempotency.ProblemStoreUnavailable)
		if h.runs.Load() != 0 {
			t.Fatal("the handler ran although the store failed")
		}
	})
	t.Run("fail open", func(t *testing.T) {
		t.Parallel()
		h := &counting{}
		srv := newMiddleware(t, &faultyStore{Store: newStore(t), failClaim: true}, idempotency.WithFailOpen(), idempotency.WithLogger(slog.New(slog.DiscardHandler)))(h)
		if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusCreated || h.runs.Load() != 1 {
			t.Fatalf("fail open: %d after %d runs; want the handler's 201", w.Code, h.runs.Load())
		}
	})
	t.Run("wait fails", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			store := &faultyStore{Store: newStore(t), failGet: true}
			release := make(chan struct{})
			srv := newMiddleware(t, store, idempotency.WithWait(time.Minute), idempotency.WithLogger(slog.New(slog.DiscardHandler)))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
			done := make(chan struct{})
			go func() { defer close(done); serve(srv, request("/x", "k", "b")) }()
			synctest.Wait()
			wantProblem(t, serve(srv, request("/x", "k", "b")), idempotency.ProblemStoreUnavailable)
			close(release)
			<-done
		})
	})
	t.Run("full", func(t *testing.T) {
		t.Parallel()
		h := &counting{}
		srv := newMiddleware(t, newStore(t, idempotency.WithMaxRecords(1)))(h)
		first := serve(srv, request("/x", "stored", "b"))
		w := serve(srv, request("/x", "new", "b"))
		wantProblem(t, w, idempotency.ProblemStoreFull)
		if w.Header().Get("Retry-After") == "" {
			t.Error("503 for a full store has no Retry-After")
		}
		if again := serve(srv, request("/x", "stored", "b")); again.Body.String() != first.Body.String() || again.Header().Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("stored key in a full store: %d %q; want the replay", again.Code, again.Body)
		}
		if h.runs.Load() != 1 {
			t.Fatalf("handler ran %d times; want 1", h.runs.Load())
		}
	})
	t.Run("complete fails", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			logs := &logRecorder{}
			store := &faultyStore{Store: newStore(t), failN: 100}
			h := &counting{}
			srv := newMiddleware(t, store, idempotency.WithLogger(slog.New(logs)))(h)
			w := serve(srv, request("/x", "k", "b"))
			if w.Code != http.StatusCreated || w.Body.String() != `{"run":1,"echo":"b"}` {
				t.Fatalf("response after a failed completion: %d %q; want the handler's", w.Code, w.Body)
			}
			if n := store.completes.Load(); n < 2 || n > 10 {
				t.Fatalf("Complete tried %d times; want a few retries, bounded", n)
			}
			if logs.count(slog.LevelError) != 1 {
				t.Fatalf("logged %d errors; want 1", logs.count(slog.LevelError))
			}
		})
	})
	t.Run("complete recovers", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			logs := &logRecorder{}
			store := &faultyStore{Store: newStore(t), failN: 1}
			h := &counting{}
			srv := newMiddleware(t, store, idempotency.WithLogger(slog.New(logs)))(h)
			serve(srv, request("/x", "k", "b"))
			if w := serve(srv, request("/x", "k", "b")); w.Header().Get(idempotency.ReplayedHeader) != "true" || h.runs.Load() != 1 {
				t.Fatal("a completion stored on its retry is not replayed")
			}
			if logs.count(slog.LevelError) != 0 {
				t.Fatal("logged an error for a completion that succeeded on retry")
			}
		})
	})
}

// Over the body limit: 413 and the handler does not run. A response over the
// storable size is answered, and a retry gets a clear error, not a rerun.
func TestMiddlewareLimits(t *testing.T) {
	t.Parallel()
	h := &counting{}
	srv := newMiddleware(t, newStore(t), idempotency.WithMaxBodyBytes(10), idempotency.WithMaxResponseBytes(20))(h)
	wantProblem(t, serve(srv, request("/x", "k1", strings.Repeat("b", 11))), idempotency.Problem("https://steadfast-go.github.io/problems/request-body-too-large"))
	// Without a Content-Length.
	r := request("/x", "k2", "")
	r.Body = io.NopCloser(strings.NewReader(strings.Repeat("b", 100)))
	r.ContentLength = -1
	wantProblem(t, serve(srv, r), idempotency.Problem("https://steadfast-go.github.io/problems/request-body-too-large"))
	if h.runs.Load() != 0 {
		t.Fatal("the handler ran for a body over the limit")
	}

	big := serve(srv, request("/x", "k3", "0123456789"))
	if big.Code != http.StatusCreated || big.Body.Len() <= 20 {
		t.Fatalf("large response: %d, %d bytes; want it sent whole", big.Code, big.Body.Len())
	}
	d := wantProblem(t, serve(srv, request("/x", "k3", "0123456789")), idempotency.ProblemResponseNotStored)
	if !strings.Contains(d.Detail, "201") || h.runs.Load() != 1 {
		t.Fatalf("retry of a large response: %+v after %d runs; want a problem naming 201, no rerun", d, h.runs.Load())
	}
}

func TestMiddlewareSafeMethodsPassThrough(t *testing.T) {
	t.Parallel()
	h := &counting{status: http.StatusOK}
	srv := newMiddleware(t, newStore(t))(h)
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		r := httptest.NewRequest(m, "/x", nil)
		r.Header.Set("Idempotency-Key", "k")
		serve(srv, r)
		serve(srv, r)
	}
	if h.runs.Load() != 6 {
		t.Fatalf("safe methods ran %d times; want 6", h.runs.Load())
	}
}

func TestMiddlewareCanonicalJSON(t *testing.T) {
	t.Parallel()
	for _, canonical := range []bool{false, true} {
		var opts []idempotency.Option
		if canonical {
			opts = append(opts, idempotency.WithCanonicalJSON())
		}
		h := &counting{}
		srv := newMiddleware(t, newStore(t), opts...)(h)
		serve(srv, request("/x", "k", `{"a":1,"b":[1.50,"x"]}`))
		w := serve(srv, request("/x", "k", "{ \"b\": [1.50, \"x\"],\n \"a\": 1 }"))
		if canonical && w.Header().Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("canonical JSON: re-encoded body got %d; want the replay", w.Code)
		}
		if !canonical {
			wantProblem(t, w, idempotency.ProblemKeyMismatch)
		}
		if canonical {
			// A real change is still a mismatch.
			wantProblem(t, serve(srv, request("/x", "k", `{"a":1,"b":[1.5,"x"]}`)), idempotency.ProblemKeyMismatch)
		}
	}
}

func TestMiddlewareKeySources(t *testing.T) {
	t.Parallel()
	byField, err := idempotency.JSONFieldKey("id")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("webhook-id", func(t *testing.T) {
		t.Parallel()
		h := &counting{}
		srv := newMiddleware(t, newStore(t), idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")))(h)
		for range 2 {
			r := request("/hooks", "", `{"type":"invoice.paid"}`)
			r.Header.Set("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
			serve(srv, r)
		}
		wantProblem(t, serve(srv, request("/hooks", "ignored", "{}")), idempotency.ProblemKeyMissing)
		if h.runs.Load() != 1 {
			t.Fatalf("ran %d times; want 1", h.runs.Load())
		}
	})
	t.Run("JSON field", func(t *testing.T) {
		t.Parallel()
		h := &counting{}
		srv := newMiddleware(t, newStore(t), idempotency.WithKeySource(byField))(h)
		serve(srv, request("/hooks", "", `{"id":"evt_1","type":"charge.succeeded"}`))
		w := serve(srv, request("/hooks", "", `{"id":"evt_1","type":"charge.succeeded"}`))
		if w.Header().Get(idempotency.ReplayedHeader) != "true" || h.runs.Load() != 1 {
			t.Fatalf("second delivery of evt_1: %d after %d runs; want the replay", w.Code, h.runs.Load())
		}
		wantProblem(t, serve(srv, request("/hooks", "", `{"id":7}`)), idempotency.ProblemKeyInvalid)
		// The handler reads the whole body, though the middleware read it first.
		if !strings.Contains(w.Body.String(), `evt_1`) {
			t.Fatalf("the handler did not see the body: %q", w.Body)
		}
	})
	t.Run("func", func(t *testing.T) {
		t.Parallel()
		h := &counting{}
		src := idempotency.KeySource(func(r *http.Request, _ []byte) (string, error) {
			if k := r.URL.Query().Get("key"); k != "" {
				return k, nil
			}
			return "", idempotency.ErrKeyMissing
		})
		srv := newMiddleware(t, newStore(t), idempotency.WithKeySource(src))(h)
		serve(srv, request("/x?key=q1", "", "b"))
		serve(srv, request("/x?key=q1", "", "b"))
		if h.runs.Load() != 1 {
			t.Fatalf("ran %d times; want 1", h.runs.Load())
		}
	})
}

func TestMiddlewareTransaction(t *testing.T) {
	t.Parallel()
	store := &fakeTxStore{MemoryStore: newStore(t)}
	var runs atomic.Int64
	srv := newMiddleware(t, store, idempotency.WithTransaction())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		txWrite(t, r.Context(), fmt.Sprint("order from run ", n))
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			panic("boom")
		default:
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, "created")
		}
	}))
	if w := serve(srv, request("/x", "k", "b")); w.Code != 500 || len(store.writes()) != 0 {
		t.Fatalf("500: committed %q; want a rollback", store.writes())
	}
	func() {
		defer func() { _ = recover() }()
		serve(srv, request("/x", "k", "b"))
	}()
	if len(store.writes()) != 0 || store.rolledBack() != 2 {
		t.Fatalf("panic: committed %q, %d rollbacks; want 2 rollbacks", store.writes(), store.rolledBack())
	}
	if w := serve(srv, request("/x", "k", "b")); w.Code != 201 || strings.Join(store.writes(), ",") != "order from run 3" {
		t.Fatalf("201: %d, committed %q", w.Code, store.writes())
	}
	if w := serve(srv, request("/x", "k", "b")); w.Body.String() != "created" || w.Header().Get(idempotency.ReplayedHeader) != "true" || runs.Load() != 3 {
		t.Fatalf("replay: %d %q after %d runs", w.Code, w.Body, runs.Load())
	}
}

// Nothing is logged per request at info level or above on the normal paths.
func TestMiddlewareQuietLogs(t *testing.T) {
	t.Parallel()
	logs := &logRecorder{}
	srv := newMiddleware(t, newStore(t), idempotency.WithLogger(slog.New(logs)))(&counting{})
	serve(srv, request("/x", "k", "b"))                     // run
	serve(srv, request("/x", "k", "b"))                     // replay
	serve(srv, request("/x", "k", "other"))                 // mismatch
	serve(srv, request("/x", "", "b"))                      // missing key
	serve(srv, request("/x", strings.Repeat("k", 300), "")) // invalid key
	if n := logs.count(slog.LevelInfo); n != 0 {
		t.Fatalf("%d records logged at info or above", n)
	}
}

// logRecorder is a slog.Handler that counts records by level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns the number of records at level or above.
func (l *logRecorder) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level >= level {
			n++
		}
	}
	return n
}

// Over a real server and client: the replay, and a response whose storing
// fails, which the client still gets whole.
func TestMiddlewareOverHTTP(t *testing.T) {
	t.Parallel()
	store := &faultyStore{Store: newStore(t)}
	h := &counting{}
	srv := httptest.NewServer(newMiddleware(t, store, idempotency.WithLogger(discardLogger()))(h))
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()
	post := func(key string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	first, body1 := post("k1")
	second, body2 := post("k1")
	if first.StatusCode != 201 || second.StatusCode != 201 || body1 != body2 || second.Header.Get(idempotency.ReplayedHeader) != "true" || h.runs.Load() != 1 {
		t.Fatalf("over HTTP: %d %q, %d %q (replayed %q) after %d runs", first.StatusCode, body1, second.StatusCode, body2, second.Header.Get(idempotency.ReplayedHeader), h.runs.Load())
	}
	store.mu.Lock()
	store.failN = 100
	store.mu.Unlock()
	resp, body := post("k2")
	if resp.StatusCode != 201 || body != `{"run":2,"echo":"body"}` {
		t.Fatalf("response whose storing failed: %d %q", resp.StatusCode, body)
	}
}
