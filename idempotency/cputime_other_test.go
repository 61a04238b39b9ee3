//go:build !unix

package idempotency_test

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
