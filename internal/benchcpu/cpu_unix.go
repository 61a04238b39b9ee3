//go:build unix

package benchcpu

import (
	"syscall"
	"time"
)

// Now returns the CPU time this process used so far (user and system), or
// false where it cannot be read.
func Now() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
