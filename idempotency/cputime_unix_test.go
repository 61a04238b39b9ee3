//go:build unix

package idempotency_test

import (
	"syscall"
	"time"
)

// cpuTime returns this process's CPU time (user and system).
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
