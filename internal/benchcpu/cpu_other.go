//go:build !unix

package benchcpu

import "time"

// Now returns false: the CPU time is not read on this platform.
func Now() (time.Duration, bool) { return 0, false }
