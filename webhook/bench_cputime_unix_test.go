//go:build unix

package webhook_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time this process used so far (user and system),
// or false where it cannot be read.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// reportCPU runs loop (a b.Loop loop) and reports, beside the wall time and
// the allocations, this process's CPU time per iteration (cpu-ns/op): on a
// machine shared with other work it moves much less than the wall time.
func reportCPU(b *testing.B, loop func()) {
	b.Helper()
	b.ReportAllocs()
	start, ok := cpuTime()
	loop()
	if end, ok2 := cpuTime(); ok && ok2 && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}
