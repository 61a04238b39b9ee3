//go:build unix

package breaker_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time the process used so far (user and system), or
// false where it cannot be read. On a machine shared with other work, CPU
// time per call moves much less than wall time per call.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
