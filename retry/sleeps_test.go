package retry_test

import (
	"context"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/retry"
)

// sleeps records, inside a testing/synctest bubble, the waits a Policy
// announces (through WithOnRetry) and the time that passed since it was made,
// which moves only while every goroutine of the bubble waits: a retry loop
// runs at once while its waits are measured.
type sleeps struct {
	start time.Time
	mu    sync.Mutex
	waits []time.Duration
}

func newSleeps() *sleeps { return &sleeps{start: time.Now()} }

// option records the announced waits.
func (s *sleeps) option() retry.Option {
	return retry.WithOnRetry(func(_ context.Context, _ int, _ error, d time.Duration) {
		s.mu.Lock()
		s.waits = append(s.waits, d)
		s.mu.Unlock()
	})
}

// Sleeps returns the waits announced so far.
func (s *sleeps) Sleeps() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// Elapsed returns the time that passed in the bubble since newSleeps.
func (s *sleeps) Elapsed() time.Duration { return time.Since(s.start) }

// sum adds durations.
func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}
