package idempotency_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

// discardWriter is a ResponseWriter that keeps nothing but its header map,
// reused across iterations.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// resettableBody is a request body that a benchmark rewinds each iteration.
type resettableBody struct{ bytes.Reader }

func (*resettableBody) Close() error { return nil }

// BenchmarkMiddleware compares the middleware over the memory store with the
// bare handler writing the same 1 KiB response: the baseline, the first run
// of each key, and the replay of one key. The baseline is the handler the
// middleware wraps: it writes the same status (201), Content-Type and 1 KiB
// body to the same kind of writer, with the same request (45-byte JSON body,
// Idempotency-Key header) and the same per-iteration harness work; a replay
// adds only its Idempotent-Replayed header. The baseline does not read the
// request body, which the middleware must read to fingerprint it. The keys
// of the first runs are made before the timer starts (storeSpan of them,
// one store's worth), so that the harness does the same work on every side.
func BenchmarkMiddleware(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	reqBody := []byte(`{"sku":"A1","quantity":2,"note":"benchmark"}`)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(payload)
	})
	wrap := func(b *testing.B, store *idempotency.MemoryStore) http.Handler {
		mw, err := idempotency.Middleware(store)
		if err != nil {
			b.Fatal(err)
		}
		return mw(bare)
	}
	newWrapped := func(b *testing.B) http.Handler { return wrap(b, warmStores(b, 1)[0]) }

	// run serves b.N requests; with fresh, h is nil and run serves them
	// with a handler over one warm store that holds storeSpan records at
	// most, as a store in use holds as many as expire: from the
	// storeSpan-th iteration on, each iteration first removes the record
	// that the storeSpan-th iteration before it made (the key it is about
	// to use again). The removal is counted against the first run, as
	// the removal of an expired record is in a store in use. (A set of
	// fresh stores made before the timer was live heap that only this
	// side had, which every collection in the loop marked; one store
	// emptied every storeSpan iterations made a heap that grew and shrank
	// by all its records, which the runtime handed back to the system
	// and took again.)
	run := func(b *testing.B, h http.Handler, key func(i int) string, fresh bool, recorder bool) {
		var (
			store *idempotency.MemoryStore
			held  []string // the scoped keys of the records of the keys
		)
		if fresh {
			store = warmStores(b, 1)[0]
			h = wrap(b, store)
			for i := range storeSpan {
				held = append(held, idempotency.ScopedKey("", http.MethodPost, "/orders", key(i)))
			}
		}
		body := &resettableBody{}
		r, err := http.NewRequest(http.MethodPost, "http://example.com/orders", nil)
		if err != nil {
			b.Fatal(err)
		}
		w := &discardWriter{h: make(http.Header)}
		b.ReportAllocs()
		b.ResetTimer()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if fresh && i >= storeSpan {
				if !idempotency.Forget(store, held[i%storeSpan]) {
					b.Fatal("no record to remove: the first runs did not store their keys")
				}
			}
			body.Reset(reqBody)
			r.Body = body
			r.ContentLength = int64(len(reqBody))
			r.Header["Idempotency-Key"] = []string{key(i)}
			if recorder {
				h.ServeHTTP(httptest.NewRecorder(), r)
				continue
			}
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	}
	same := func(int) string { return "8e03978e-40d5-43e8-bc93-6894a57f9324" }
	keys := make([]string, storeSpan)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	// Unique within a store: run removes a key's record before it uses
	// the key again.
	unique := func(i int) string { return keys[i%storeSpan] }
	// The writer discards: what is measured is the middleware alone.
	b.Run("bare", func(b *testing.B) { run(b, bare, same, false, false) })
	b.Run("first-run", func(b *testing.B) { run(b, nil, unique, true, false) })
	b.Run("replay", func(b *testing.B) { run(b, newWrapped(b), same, false, false) })
	// The same with a writer that keeps the response, as a server's does.
	b.Run("recorder/bare", func(b *testing.B) { run(b, bare, same, false, true) })
	b.Run("recorder/first-run", func(b *testing.B) { run(b, nil, unique, true, true) })
	b.Run("recorder/replay", func(b *testing.B) { run(b, newWrapped(b), same, false, true) })
}

// cpuMeter counts this process's CPU time while the benchmark's timer
// runs, and reports it per iteration (cpu-ns/op) beside the wall time. On a
// machine shared with other work the wall time of a microsecond's call
// swings from one second to the next; its CPU time far less.
type cpuMeter struct {
	b            *testing.B
	total, start time.Duration
	ok           bool
}

func newCPUMeter(b *testing.B) *cpuMeter {
	m := &cpuMeter{b: b}
	m.start, m.ok = benchcpu.Now()
	return m
}

// report reports cpu-ns/op.
func (m *cpuMeter) report() {
	now, ok := benchcpu.Now()
	if m.ok && ok && m.b.N > 0 {
		m.b.ReportMetric(float64(m.total+now-m.start)/float64(m.b.N), "cpu-ns/op")
	}
}

type benchResult struct {
	ID     string
	Amount int
}

// benchWork is the work of BenchmarkDo: every side calls it and encodes
// its result. It is not inlined, so that its result is a value made at
// run time, as a real result is, on every side: encoding one as an
// interface then costs an allocation (a composite literal of constants
// passed to json.Marshal directly is boxed by the compiler for free).
//
//go:noinline
func benchWork(context.Context) (benchResult, error) {
	return benchResult{ID: "ch_1", Amount: 42}, nil
}

// storeSpan is how many first runs a benchmark makes against one store.
const storeSpan = 4096

// warmStores returns the stores that n first runs use, one per storeSpan:
// empty MemoryStores, unbounded, that have held storeSpan records at once
// before (all claimed, then all released), as a store in use has: their
// maps have the room, so that the benchmarks measure first runs, not the
// growth of a new map. (Releasing each claim before the next left every
// map at one record.) They are made before the timer starts, and what
// making them left behind is collected then: the timed loop collects its
// own garbage only.
func warmStores(b *testing.B, n int) []*idempotency.MemoryStore {
	b.Helper()
	ctx := context.Background()
	stores := make([]*idempotency.MemoryStore, (max(n, 1)+storeSpan-1)/storeSpan)
	keys := make([]string, storeSpan)
	for i := range keys {
		keys[i] = "warm-" + strconv.Itoa(i)
	}
	tokens := make([]int64, storeSpan)
	for j := range stores {
		s, err := idempotency.NewMemoryStore(idempotency.WithMaxRecords(0), idempotency.WithMaxBytes(0))
		if err != nil {
			b.Fatal(err)
		}
		for i, k := range keys {
			c, err := s.Claim(ctx, k, "", time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			tokens[i] = c.Token
		}
		for i, k := range keys {
			if err := s.Release(ctx, k, tokens[i]); err != nil {
				b.Fatal(err)
			}
		}
		stores[j] = s
	}
	runtime.GC()
	return stores
}

// BenchmarkDo compares Do (first run of each key, JSON codec) with the
// memory store's own Claim and Complete called directly: "direct" stores a
// result encoded beforehand; "direct-json" encodes it in the loop, as a
// caller doing Do's job by hand must, so that Do's own cost is Do minus
// direct-json. Both use a fresh store every storeSpan keys, as Do does, and
// direct-json calls the same work function as Do.
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	encoded := []byte(`{"ID":"ch_1","Amount":42}`)
	b.Run("direct", func(b *testing.B) {
		var s *idempotency.MemoryStore
		stores := warmStores(b, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if i%storeSpan == 0 {
				s, stores[i/storeSpan] = stores[i/storeSpan], nil
			}
			key := "k" + strconv.Itoa(i)
			c, err := s.Claim(ctx, key, "", 30*time.Second)
			if err != nil || !c.Acquired {
				b.Fatal(c, err)
			}
			if err := s.Complete(ctx, key, c.Token, encoded, 24*time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct-json", func(b *testing.B) {
		var s *idempotency.MemoryStore
		stores := warmStores(b, b.N)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if i%storeSpan == 0 {
				s, stores[i/storeSpan] = stores[i/storeSpan], nil
			}
			key := "k" + strconv.Itoa(i)
			c, err := s.Claim(ctx, key, "", 30*time.Second)
			if err != nil || !c.Acquired {
				b.Fatal(c, err)
			}
			v, err := benchWork(ctx)
			if err != nil {
				b.Fatal(err)
			}
			enc, err := json.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Complete(ctx, key, c.Token, enc, 24*time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Do", func(b *testing.B) {
		var r *idempotency.Runner
		fn := benchWork
		var runners []*idempotency.Runner
		for _, s := range warmStores(b, b.N) {
			r, err := idempotency.NewRunner(s)
			if err != nil {
				b.Fatal(err)
			}
			runners = append(runners, r)
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if i%storeSpan == 0 {
				r, runners[i/storeSpan] = runners[i/storeSpan], nil
			}
			if _, err := idempotency.Do(ctx, r, "k"+strconv.Itoa(i), fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Do-replay", func(b *testing.B) {
		r, err := idempotency.NewRunner(warmStores(b, 1)[0])
		if err != nil {
			b.Fatal(err)
		}
		fn := benchWork
		b.ReportAllocs()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for b.Loop() {
			if _, err := idempotency.Do(ctx, r, "k", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
}
