//go:build !unix

package benchmarks_test

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
