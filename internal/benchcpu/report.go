package benchcpu

import "testing"

// Report runs loop (a b.Loop loop) and reports, beside the wall time and
// the allocations, this process's CPU time per iteration (cpu-ns/op).
func Report(b *testing.B, loop func()) {
	b.Helper()
	b.ReportAllocs()
	start, ok := Now()
	loop()
	if end, ok2 := Now(); ok && ok2 && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}
