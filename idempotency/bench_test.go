package idempotency_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
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
	newWrapped := func(b *testing.B) http.Handler {
		store := warmStore(b)
		mw, err := idempotency.Middleware(store)
		if err != nil {
			b.Fatal(err)
		}
		return mw(bare)
	}

	// run serves b.N requests; renew, if not nil, gives a fresh handler
	// (over a fresh store) every storeSpan iterations, outside the timer, so
	// that the first-run path is measured over a store of bounded size.
	run := func(b *testing.B, h http.Handler, key func(i int) string, renew func(*testing.B) http.Handler, recorder bool) {
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
			if renew != nil && i%storeSpan == 0 {
				cpu.pause()
				h = renew(b)
				cpu.resume()
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
	// Unique within a store: run renews the store every storeSpan keys.
	fresh := func(i int) string { return keys[i%storeSpan] }
	// The writer discards: what is measured is the middleware alone.
	b.Run("bare", func(b *testing.B) { run(b, bare, same, nil, false) })
	b.Run("first-run", func(b *testing.B) {
		run(b, nil, fresh, newWrapped, false)
	})
	b.Run("replay", func(b *testing.B) { run(b, newWrapped(b), same, nil, false) })
	// The same with a writer that keeps the response, as a server's does.
	b.Run("recorder/bare", func(b *testing.B) { run(b, bare, same, nil, true) })
	b.Run("recorder/first-run", func(b *testing.B) {
		run(b, nil, fresh, newWrapped, true)
	})
	b.Run("recorder/replay", func(b *testing.B) { run(b, newWrapped(b), same, nil, true) })
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
	m.start, m.ok = cpuTime()
	return m
}

// pause stops the benchmark's timer and the meter; resume starts both.
func (m *cpuMeter) pause() {
	m.b.StopTimer()
	now, ok := cpuTime()
	m.total += now - m.start
	m.ok = m.ok && ok
}

func (m *cpuMeter) resume() {
	m.start, _ = cpuTime()
	m.b.StartTimer()
}

// report reports cpu-ns/op; the meter must be running.
func (m *cpuMeter) report() {
	now, ok := cpuTime()
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

// warmStore returns an empty MemoryStore, unbounded, that has held
// storeSpan records at once before (all claimed, then all released,
// untimed), as a store in use has: its maps have the room, so that the
// benchmarks measure first runs, not the growth of a new map. (Releasing
// each claim before the next left every map at one record.)
func warmStore(b *testing.B) *idempotency.MemoryStore {
	b.Helper()
	s, err := idempotency.NewMemoryStore(idempotency.WithMaxRecords(0), idempotency.WithMaxBytes(0))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	tokens := make([]int64, storeSpan)
	for i := range storeSpan {
		c, err := s.Claim(ctx, "warm-"+strconv.Itoa(i), "", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = c.Token
	}
	for i, t := range tokens {
		if err := s.Release(ctx, "warm-"+strconv.Itoa(i), t); err != nil {
			b.Fatal(err)
		}
	}
	return s
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
	newMem := warmStore
	b.Run("direct", func(b *testing.B) {
		var s *idempotency.MemoryStore
		b.ReportAllocs()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if i%storeSpan == 0 {
				cpu.pause()
				s = newMem(b)
				cpu.resume()
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
		b.ReportAllocs()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if i%storeSpan == 0 {
				cpu.pause()
				s = newMem(b)
				cpu.resume()
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
		b.ReportAllocs()
		cpu := newCPUMeter(b)
		defer cpu.report()
		for i := 0; i < b.N; i++ {
			if i%storeSpan == 0 {
				cpu.pause()
				var err error
				if r, err = idempotency.NewRunner(newMem(b)); err != nil {
					b.Fatal(err)
				}
				cpu.resume()
			}
			if _, err := idempotency.Do(ctx, r, "k"+strconv.Itoa(i), fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Do-replay", func(b *testing.B) {
		r, err := idempotency.NewRunner(newMem(b))
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
