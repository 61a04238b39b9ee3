package idempotency_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// claimTracker counts the claims that are held: acquired and neither
// completed nor released.
type claimTracker struct {
	idempotency.Store
	held atomic.Int64
}

func (s *claimTracker) Claim(ctx context.Context, key, fp string, lease time.Duration) (idempotency.Claim, error) {
	c, err := s.Store.Claim(ctx, key, fp, lease)
	if err == nil && c.Acquired {
		s.held.Add(1)
	}
	return c, err
}

func (s *claimTracker) Complete(ctx context.Context, key string, token int64, resp []byte, retention time.Duration) error {
	err := s.Store.Complete(ctx, key, token, resp, retention)
	if err == nil {
		s.held.Add(-1)
	}
	return err
}

func (s *claimTracker) Release(ctx context.Context, key string, token int64) error {
	err := s.Store.Release(ctx, key, token)
	if err == nil {
		s.held.Add(-1)
	}
	return err
}

// FuzzMiddleware sends two identical requests with random methods, key
// headers, bodies and handler outcomes. The middleware must never panic
// (but the handler's own panic), always answer with a valid response (a
// problem+json body that parses, when it is the middleware's), never leave a
// claim held, and never run a handler twice for a stored response.
func FuzzMiddleware(f *testing.F) {
	f.Add("POST", "k1", "", []byte(`{"a":1}`), uint16(201), false, false)
	f.Add("POST", `"quoted key"`, "", []byte(""), uint16(500), false, true)
	f.Add("PUT", "k", "second", []byte("x"), uint16(200), false, false)
	f.Add("POST", strings.Repeat("k", 256), "", []byte("x"), uint16(404), false, false)
	f.Add("PATCH", "k", "", bytes.Repeat([]byte("b"), 100), uint16(200), true, false)
	f.Add("GET", "k", "", []byte(nil), uint16(429), false, false)
	f.Add("DELETE", "\x00\xff", "", []byte("{"), uint16(302), false, false)
	f.Fuzz(func(t *testing.T, method, key1, key2 string, body []byte, status uint16, panics, canonical bool) {
		if method == "" {
			method = "POST"
		}
		code := 200 + int(status)%400 // 200..599
		store := &claimTracker{Store: newStore(t)}
		opts := []idempotency.Option{idempotency.WithMaxBodyBytes(64), idempotency.WithMaxResponseBytes(64)}
		if canonical {
			opts = append(opts, idempotency.WithCanonicalJSON())
		}
		var runs atomic.Int64
		srv := newMiddleware(t, store, opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			got, err := io.ReadAll(r.Body)
			if err != nil || (len(body) <= 64 && !bytes.Equal(got, body)) {
				t.Errorf("the handler read %q, %v; want the request body %q", got, err, body)
			}
			if panics {
				panic("handler panic")
			}
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(code)
			_, _ = w.Write(bytes.Repeat(got, 2))
		}))
		send := func() (w *httptest.ResponseRecorder, panicked bool) {
			hdr := http.Header{}
			if key1 != "" {
				hdr["Idempotency-Key"] = []string{key1}
			}
			if key2 != "" {
				hdr["Idempotency-Key"] = append(hdr["Idempotency-Key"], key2)
			}
			r := (&http.Request{
				Method:        method,
				URL:           &url.URL{Path: "/x"},
				Header:        hdr,
				Body:          io.NopCloser(bytes.NewReader(body)),
				ContentLength: int64(len(body)),
			}).WithContext(context.Background())
			w = httptest.NewRecorder()
			defer func() {
				if p := recover(); p != nil {
					if !panics || p != "handler panic" {
						t.Fatalf("panic %v", p)
					}
					panicked = true
				}
			}()
			srv.ServeHTTP(w, r)
			return w, false
		}
		for i := range 2 {
			before := runs.Load()
			w, panicked := send()
			if held := store.held.Load(); held != 0 {
				t.Fatalf("request %d left %d claims held", i, held)
			}
			if panicked {
				continue
			}
			if w.Code < 100 || w.Code > 599 {
				t.Fatalf("request %d: status %d", i, w.Code)
			}
			ranNow := runs.Load() > before
			if !ranNow && w.Header().Get(idempotency.ReplayedHeader) == "" {
				if w.Header().Get("Content-Type") != "application/problem+json" {
					t.Fatalf("request %d: the middleware answered %d with %q; want problem+json", i, w.Code, w.Header().Get("Content-Type"))
				}
				var d problemDetails
				if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || d.Status != w.Code || d.Type == "" || d.Title == "" {
					t.Fatalf("request %d: problem %q (%v) does not match status %d", i, w.Body, err, w.Code)
				}
			}
			if i == 1 && ranNow && runs.Load() == 2 && idempotency.DefaultFinalStatus(code) && !panics &&
				method != "GET" && method != "HEAD" && method != "OPTIONS" && method != "TRACE" {
				if _, err := idempotency.ParseKey(nonEmpty(key1, key2)); err == nil {
					t.Fatalf("the handler ran twice for a stored %d", code)
				}
			}
		}
	})
}

func nonEmpty(vs ...string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// storedStore is a Store whose every key holds one completed record with a
// given response, as if another version or a corrupted backend wrote it.
type storedStore struct {
	idempotency.Store
	response []byte
}

func (s *storedStore) Claim(_ context.Context, key, fp string, _ time.Duration) (idempotency.Claim, error) {
	return idempotency.Claim{Record: idempotency.Record{Key: key, Fingerprint: fp, Status: idempotency.StatusCompleted, Response: s.response}}, nil
}

// FuzzReplay replays random stored bytes: the middleware must answer with a
// valid response (the stored one, or a problem), never panic, never run the
// handler, and never replay a header that must not be replayed.
func FuzzReplay(f *testing.F) {
	mem, err := idempotency.NewMemoryStore()
	if err != nil {
		f.Fatal(err)
	}
	// Seed with real stored responses, taken from the memory store.
	seedSrv := newMiddleware(f, mem, idempotency.WithStoredHeaders("Content-Type", "Location", "X-A"), idempotency.WithMaxResponseBytes(8))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("X-A", "1")
			w.Header().Add("X-A", "2")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(201)
			_, _ = io.Copy(w, r.Body)
		}))
	for i, body := range []string{"", "short", "longer than eight"} {
		key := fmt.Sprint("seed", i)
		serve(seedSrv, request("/x", key, body))
		rec, err := mem.Get(context.Background(), idempotency.ScopedKey("", "POST", "/x", key))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec.Response)
	}
	f.Add([]byte{})
	f.Add([]byte("r\xc8\x01\x01\x0aSet-Cookie\x01\x01x"))
	f.Fuzz(func(t *testing.T, stored []byte) {
		srv := newMiddleware(t, &storedStore{Store: mem, response: stored}, idempotency.WithLogger(discardLogger()))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				t.Fatal("the handler ran for a completed record")
			}))
		w := serve(srv, request("/x", "k", "b"))
		if w.Code < 100 || w.Code > 999 {
			t.Fatalf("status %d", w.Code)
		}
		if w.Header().Get(idempotency.ReplayedHeader) != "true" {
			var d problemDetails
			if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || d.Status != w.Code {
				t.Fatalf("not a replay and not a problem: %d %q", w.Code, w.Body)
			}
		}
		for _, h := range []string{"Set-Cookie", "Authorization", "Proxy-Authorization", "Www-Authenticate"} {
			if _, ok := w.Header()[h]; ok {
				t.Fatalf("replayed %s", h)
			}
		}
	})
}

// FuzzReplayHeaders stores responses with random values of the stored
// header fields (common values among them): the replay must carry every
// value of every field, in order.
func FuzzReplayHeaders(f *testing.F) {
	f.Add("application/json\nno-store\n</a>; rel=next\n\ngzip", uint8(3))
	f.Add("text/plain; charset=utf-8", uint8(1))
	f.Add(strings.Repeat("v", 300)+"\nbr\nprivate", uint8(7))
	f.Fuzz(func(t *testing.T, values string, spread uint8) {
		names := []string{"Content-Type", "Cache-Control", "Link", "Content-Encoding", "Etag"}
		want := http.Header{}
		for i, v := range strings.Split(values, "\n") {
			name := names[(i*int(spread|1))%len(names)]
			want[name] = append(want[name], v)
		}
		srv := newMiddleware(t, newStore(t))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for name, vs := range want {
				w.Header()[name] = append([]string(nil), vs...)
			}
			w.WriteHeader(http.StatusCreated)
		}))
		serve(srv, request("/x", "k", "b"))
		got := serve(srv, request("/x", "k", "b"))
		if got.Header().Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("not a replay: %d %v", got.Code, got.Header())
		}
		for name, vs := range want {
			if !slices.Equal(got.Header()[name], vs) {
				t.Fatalf("replayed %s = %q; want %q", name, got.Header()[name], vs)
			}
		}
	})
}
