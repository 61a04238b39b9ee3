package durabletest

import (
	"time"

	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

// cpuTime returns this process's CPU time, 0 where it cannot be read.
func cpuTime() time.Duration {
	d, _ := benchcpu.Now()
	return d
}
