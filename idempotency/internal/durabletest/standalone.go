package durabletest

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Side is one side of a [Standalone] comparison: Op is one operation (a
// store call, or the hand-written commands it is compared with).
type Side struct {
	Name string
	Op   func(ctx context.Context) error
}

// Standalone measures sides one at a time (STYLE rule 14): in each round
// every side runs alone for Round with Callers concurrent callers, and the
// order of the sides rotates from round to round. For each side it reports
// the median over the rounds of its throughput (<name>-ops/s), of the
// allocations per operation of this process (<name>-allocs/op), of this
// process's CPU time per operation (<name>-cpu-µs/op) and, when Server is
// set, of the server's (<name>-server-cpu-µs/op); for each side after the
// first, its throughput over the first side's in the same round, as a
// median with its range (<name>/<first>, -min, -max), and, when Server is
// set or InProcess, the same ratio read from CPU time (<name>/<first>-by-cpu: the first
// side's CPU time per operation, client's and server's, over this
// side's), which a machine shared with other work moves far less than the
// wall time: where client and server share the CPUs, throughput is
// bounded by it.
//
// b.N multiplies the rounds: run it with -benchtime 1x.
type Standalone struct {
	// Callers is the number of concurrent callers. Defaults to 16.
	Callers int
	// Round is how long each side runs per round. Defaults to 1s.
	Round time.Duration
	// Rounds is the number of rounds (times b.N). Defaults to 5.
	Rounds int
	// Server, if set, returns the server's cumulative CPU time; it is read
	// before and after each side's turn.
	Server func() (time.Duration, error)
	// InProcess says that the database runs in this process (SQLite): the
	// ratio is then also read from this process's CPU time alone.
	InProcess bool
	// Setup, if set, runs before each side's turn, untimed (e.g. to
	// prepare the keys the turn uses).
	Setup func(side string)
}

type sideRun struct {
	opsPerSec, allocs, cpu, server float64
}

// Run runs the comparison of sides (the first is the baseline) and
// reports as described on [Standalone].
func (s Standalone) Run(b *testing.B, sides ...Side) {
	b.Helper()
	if s.Callers <= 0 {
		s.Callers = 16
	}
	if s.Round <= 0 {
		s.Round = time.Second
	}
	if s.Rounds <= 0 {
		s.Rounds = 5
	}
	runs := make([][]sideRun, len(sides))
	// Warm every side up (connections, script caches, the allocator).
	for _, sd := range sides {
		s.turn(b, sd, s.Round/5)
	}
	b.ResetTimer()
	for r := 0; r < s.Rounds*b.N; r++ {
		for j := range sides {
			i := (j + r) % len(sides)
			runs[i] = append(runs[i], s.turn(b, sides[i], s.Round))
		}
	}
	b.StopTimer()
	med := func(i int, f func(sideRun) float64) float64 {
		v := make([]float64, len(runs[i]))
		for k, r := range runs[i] {
			v[k] = f(r)
		}
		return median(v)
	}
	for i, sd := range sides {
		b.ReportMetric(med(i, func(r sideRun) float64 { return r.opsPerSec }), sd.Name+"-ops/s")
		b.ReportMetric(med(i, func(r sideRun) float64 { return r.allocs }), sd.Name+"-allocs/op")
		b.ReportMetric(med(i, func(r sideRun) float64 { return r.cpu }), sd.Name+"-cpu-µs/op")
		if s.Server != nil {
			b.ReportMetric(med(i, func(r sideRun) float64 { return r.server }), sd.Name+"-server-cpu-µs/op")
		}
		if i == 0 {
			continue
		}
		ratios := make([]float64, len(runs[i]))
		for k := range ratios {
			ratios[k] = runs[i][k].opsPerSec / runs[0][k].opsPerSec
		}
		name := sd.Name + "/" + sides[0].Name
		b.ReportMetric(median(ratios), name)
		b.ReportMetric(slices.Min(ratios), name+"-min")
		b.ReportMetric(slices.Max(ratios), name+"-max")
		if s.Server == nil && !s.InProcess {
			continue
		}
		// The same ratio from CPU time: the first side's CPU time per
		// operation, this process's and the server's, over this side's.
		for k := range ratios {
			base, this := runs[0][k], runs[i][k]
			ratios[k] = (base.cpu + base.server) / (this.cpu + this.server)
		}
		b.ReportMetric(median(ratios), name+"-by-cpu")
		b.ReportMetric(slices.Min(ratios), name+"-by-cpu-min")
		b.ReportMetric(slices.Max(ratios), name+"-by-cpu-max")
	}
	b.ReportMetric(0, "ns/op")
}

// turn runs sd alone for d and measures it.
func (s Standalone) turn(b *testing.B, sd Side, d time.Duration) sideRun {
	b.Helper()
	if s.Setup != nil {
		s.Setup(sd.Name)
	}
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var srv0 time.Duration
	if s.Server != nil {
		var err error
		if srv0, err = s.Server(); err != nil {
			b.Fatal(err)
		}
	}
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(d)
	var (
		ops    atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	for range s.Callers {
		wg.Go(func() {
			ctx := context.Background()
			n := int64(0)
			for !failed.Load() {
				if n%8 == 0 && time.Now().After(deadline) {
					break
				}
				if err := sd.Op(ctx); err != nil {
					if !failed.Swap(true) {
						b.Errorf("%s: %v", sd.Name, err)
					}
					break
				}
				n++
			}
			ops.Add(n)
		})
	}
	wg.Wait()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	n := float64(max(ops.Load(), 1))
	r := sideRun{
		opsPerSec: n / el.Seconds(),
		allocs:    float64(ms1.Mallocs-ms0.Mallocs) / n,
		cpu:       float64(cpu.Nanoseconds()) / 1e3 / n,
	}
	if s.Server != nil {
		srv1, err := s.Server()
		if err != nil {
			b.Fatal(err)
		}
		r.server = float64((srv1 - srv0).Nanoseconds()) / 1e3 / n
	}
	if failed.Load() {
		b.FailNow()
	}
	return r
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
