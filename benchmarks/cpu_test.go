package benchmarks_test

import "testing"

// reportCPU runs loop (a b.Loop loop) and reports, beside the wall time and
// the allocations, this process's CPU time per iteration (cpu-ns/op) where
// it can be read. On a machine shared with other work the wall time of a
// call swings with the load; its CPU time moves much less, so BENCHMARKS.md
// takes its ratios from cpu-ns/op. In the HTTP benchmarks the loopback
// server runs in the same process: its CPU time is counted for every side.
func reportCPU(b *testing.B, loop func()) {
	b.Helper()
	b.ReportAllocs()
	start, ok := cpuTime()
	loop()
	if end, ok2 := cpuTime(); ok && ok2 && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}
