package idempotency_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

func TestStatusString(t *testing.T) {
	t.Parallel()
	for s, want := range map[idempotency.Status]string{
		idempotency.StatusInProgress: "in_progress",
		idempotency.StatusCompleted:  "completed",
		0:                            "unknown",
	} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q; want %q", s, got, want)
		}
	}
}

func TestNotStoredError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := &faultyStore{Store: newStore(t), failN: 100}
		_, err := idempotency.Do(context.Background(), newRunner(t, store), "k", func(context.Context) (int, error) { return 1, nil })
		if !errors.Is(err, idempotency.ErrNotStored) || !errors.Is(err, errStoreDown) || !strings.Contains(err.Error(), `"k"`) || !strings.Contains(err.Error(), "store down") {
			t.Fatalf("not stored: %v", err)
		}
	})
}

// gobCodec is a Codec other than the default.
type gobCodec struct{}

func (gobCodec) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}

func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

func TestDoCodec(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	r := newRunner(t, store, idempotency.WithCodec(gobCodec{}))
	ctx := context.Background()
	fn := func(context.Context) (receipt, error) { return receipt{ID: "ch_1", Amount: 3}, nil }
	if _, err := idempotency.Do(ctx, r, "k", fn); err != nil {
		t.Fatal(err)
	}
	got, err := idempotency.Do(ctx, r, "k", fn)
	if err != nil || got != (receipt{ID: "ch_1", Amount: 3}) {
		t.Fatalf("replay through gob = %+v, %v", got, err)
	}
	// The stored form is the codec's, not JSON: the default codec cannot read it.
	if _, err := idempotency.Do(ctx, newRunner(t, store), "k", fn); err == nil {
		t.Fatal("the JSON codec decoded a gob result")
	}
}

// Bodies above the pooled size are fingerprinted by the streaming path, with
// the same outcome.
func TestMiddlewareLargeBody(t *testing.T) {
	t.Parallel()
	h := &counting{}
	srv := newMiddleware(t, newStore(t), idempotency.WithMaxResponseBytes(1<<20))(h)
	big := strings.Repeat("b", 100<<10)
	first := serve(srv, request("/x", "k", big))
	second := serve(srv, request("/x", "k", big))
	if second.Header().Get(idempotency.ReplayedHeader) != "true" || second.Body.String() != first.Body.String() || h.runs.Load() != 1 {
		t.Fatalf("100 KiB body: replayed %q after %d runs", second.Header().Get(idempotency.ReplayedHeader), h.runs.Load())
	}
	wantProblem(t, serve(srv, request("/x", "k", big[:len(big)-1]+"c")), idempotency.ProblemKeyMismatch)
}

// With a route function that puts two paths in one namespace, the key is
// shared, and the path, part of the fingerprint, tells the requests apart.
func TestMiddlewareRoute(t *testing.T) {
	t.Parallel()
	h := &counting{}
	srv := newMiddleware(t, newStore(t), idempotency.WithRoute(func(*http.Request) string { return "all" }))(h)
	serve(srv, request("/a", "k", "b"))
	wantProblem(t, serve(srv, request("/b", "k", "b")), idempotency.ProblemKeyMismatch)
}

func TestMiddlewareInformationalResponse(t *testing.T) {
	t.Parallel()
	srv := newMiddleware(t, newStore(t))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusTeapot) // ignored: the status is written
		_, _ = w.Write([]byte("ok"))
	}))
	for range 2 {
		if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusAccepted || w.Body.String() != "ok" {
			t.Fatalf("%d %q; want 202 ok", w.Code, w.Body)
		}
	}
}

// A release that fails leaves the key held until its lease ends, and says
// so at warn level; the client still gets the handler's response.
func TestMiddlewareReleaseFails(t *testing.T) {
	t.Parallel()
	logs := &logRecorder{}
	store := &faultyStore{Store: newStore(t), failRelease: true}
	h := &counting{status: http.StatusBadGateway}
	srv := newMiddleware(t, store, idempotency.WithLogger(slog.New(logs)))(h)
	if w := serve(srv, request("/x", "k", "b")); w.Code != http.StatusBadGateway {
		t.Fatalf("%d; want the handler's 502", w.Code)
	}
	wantProblem(t, serve(srv, request("/x", "k", "b")), idempotency.ProblemInProgress)
	if logs.count(slog.LevelWarn) != 1 {
		t.Fatalf("logged %d warnings; want 1", logs.count(slog.LevelWarn))
	}
}

// In wait mode, a duplicate waiting on a holder that died takes the key
// over once the lease ends, and runs the handler.
func TestMiddlewareWaitTakeover(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := newStore(t)
		h := &counting{}
		srv := newMiddleware(t, store, idempotency.WithWait(time.Minute), idempotency.WithLease(2*time.Second))(h)
		// Find the request's stored key and fingerprint, then hold it as a
		// holder that dies: claimed, never renewed.
		serve(srv, request("/x", "k", "b"))
		skey := idempotency.ScopedKey("", "POST", "/x", "k")
		rec, err := store.Get(context.Background(), skey)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Hour) // past the retention
		c, err := store.Claim(context.Background(), skey, rec.Fingerprint, 2*time.Second)
		if err != nil || !c.Acquired {
			t.Fatal(c, err)
		}
		start := time.Now()
		w := serve(srv, request("/x", "k", "b"))
		if w.Code != http.StatusCreated || w.Header().Get(idempotency.ReplayedHeader) != "" || h.runs.Load() != 2 {
			t.Fatalf("%d replayed=%q after %d runs; want a new run after the takeover", w.Code, w.Header().Get(idempotency.ReplayedHeader), h.runs.Load())
		}
		if waited := time.Since(start); waited < 2*time.Second {
			t.Fatalf("took over after %v, before the lease ended", waited)
		}
	})
}
