package sqlcatchup_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
)

// BenchmarkApplyPolled measures applying polled events, against a loopback
// source serving pages of 100: the Poller (lease, cursor advanced in each
// page's transaction, overlap, metrics, retry around each fetch) against a
// hand-written loop that reads the same pages (plain GET and JSON decoding)
// and, per page, does the same inbox insert and effect per event in one
// transaction, keeping its cursor in memory. Rounds of 10,000 events, so
// that starting and stopping the poller weigh little. Each side runs alone over the
// same events with a fresh consumer, rounds alternating; the metrics are
// medians over the rounds, the ratio is the poller's time over the loop's
// (its range beside); CPU time of this process per event is reported too,
// as a shared machine's load moves it far less than wall time.
//
//	go test -run '^$' -bench ApplyPolled -benchtime 1x ./catchup/sqlcatchup/
func BenchmarkApplyPolled(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			e := newEnv(b, d)
			p := newProvider(b)
			const events, rounds = 10000, 5
			p.add(events)
			handle := e.handler()
			var loop, poll, loopAllocs, pollAllocs, loopCPU, pollCPU []float64
			for i := 0; i < rounds*b.N; i++ {
				consumer := fmt.Sprintf("r%d", i)
				for side := range 2 {
					var ms0, ms1 runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&ms0)
					cpu0 := cpuTime()
					var el time.Duration
					if (i+side)%2 == 0 { // alternate which side goes first
						el = handLoop(b, e, p, consumer+"-loop", handle)
						loop = append(loop, el.Seconds())
					} else {
						el = pollOnce(b, e, p, consumer+"-poll", handle)
						poll = append(poll, el.Seconds())
					}
					cpu := float64((cpuTime() - cpu0).Microseconds()) / events
					runtime.ReadMemStats(&ms1)
					a := float64(ms1.Mallocs-ms0.Mallocs) / events
					if (i+side)%2 == 0 {
						loopAllocs, loopCPU = append(loopAllocs, a), append(loopCPU, cpu)
					} else {
						pollAllocs, pollCPU = append(pollAllocs, a), append(pollCPU, cpu)
					}
				}
			}
			ratios := make([]float64, len(poll))
			for i := range poll {
				ratios[i] = poll[i] / loop[i]
			}
			b.ReportMetric(events/median(loop), "loop-events/s")
			b.ReportMetric(events/median(poll), "poller-events/s")
			b.ReportMetric(median(ratios), "ratio")
			b.ReportMetric(slices.Min(ratios), "ratio-min")
			b.ReportMetric(slices.Max(ratios), "ratio-max")
			b.ReportMetric(median(loopCPU), "loop-cpu-µs/event")
			b.ReportMetric(median(pollCPU), "poller-cpu-µs/event")
			b.ReportMetric(median(loopAllocs), "loop-allocs/event")
			b.ReportMetric(median(pollAllocs), "poller-allocs/event")
			b.ReportMetric(0, "ns/op")
			if n := e.effectTotal(); n != 2*rounds*b.N*events {
				b.Fatalf("%d effects, want %d", n, 2*rounds*b.N*events)
			}
		})
	}
}

// cpuTime returns the CPU time this process has used (the test's side of
// the work; on SQLite all of it), which other processes' load moves far
// less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// handLoop is what a team writes by hand: read each page, apply it in one
// transaction (inbox insert, effect), remember the cursor in memory.
func handLoop(b *testing.B, e *env, p *provider, consumer string, handle catchup.HandlerFunc) time.Duration {
	// Cancellable, as a loop that runs until shutdown has (on SQLite the
	// driver watches it for each statement).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := p.srv.Client()
	start := time.Now()
	cursor := ""
	for {
		url := p.url() + "?limit=100"
		if cursor != "" {
			url += "&starting_after=" + cursor
		}
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		var page struct {
			Data    []json.RawMessage `json:"data"`
			HasMore bool              `json:"has_more"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		tx, err := e.store.Begin(ctx) // a plain BeginTx (READ COMMITTED on MySQL, as the poller's)
		if err != nil {
			b.Fatal(err)
		}
		for _, raw := range page.Data {
			var ev struct {
				ID   string `json:"id"`
				Type string `json:"type"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil {
				b.Fatal(err)
			}
			first, err := e.idem.MarkProcessed(ctx, tx, consumer, ev.ID)
			if err != nil {
				b.Fatal(err)
			}
			if first {
				if err := handle(ctx, tx, catchup.Event{ID: ev.ID, Type: ev.Type, Payload: raw, Cursor: ev.ID}); err != nil {
					b.Fatal(err)
				}
			}
			cursor = ev.ID
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		if !page.HasMore {
			return time.Since(start)
		}
	}
}

// endSource reports when the poller asks for a page after it was given the
// last one: its next pass, which begins after the last page committed.
type endSource struct {
	catchup.Source
	mu       sync.Mutex
	gaveLast bool
	done     chan struct{}
}

func (s *endSource) List(ctx context.Context, cursor string) (catchup.Page, error) {
	s.mu.Lock()
	if s.gaveLast {
		s.gaveLast = false
		close(s.done)
	}
	s.mu.Unlock()
	page, err := s.Source.List(ctx, cursor)
	if err == nil && !page.More {
		s.mu.Lock()
		s.gaveLast = true
		s.mu.Unlock()
	}
	return page, err
}

// pollOnce runs a poller (defaults, but a 1 ms poll interval) until it has
// applied the whole list once.
func pollOnce(b *testing.B, e *env, p *provider, source string, handle catchup.HandlerFunc) time.Duration {
	src, err := catchup.NewHTTPSource(p.srv.Client(), p.url())
	if err != nil {
		b.Fatal(err)
	}
	es := &endSource{Source: src, done: make(chan struct{})}
	poller, err := catchup.NewPoller(source, es, e.store, e.idem, func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
		return handle(ctx, tx, ev)
	}, catchup.WithPollInterval(time.Millisecond), catchup.WithLogger(quietLogger()))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := poller.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	select {
	case <-es.done:
	case <-time.After(5 * time.Minute):
		b.Fatal("the poller did not finish")
	}
	el := time.Since(start)
	stopPoller(b, poller)
	return el
}
