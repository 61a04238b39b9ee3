//go:build !unix

package breaker_test

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
