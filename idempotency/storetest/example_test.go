package storetest_test

import (
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
)

// A backend's conformance test. A store that reads time in Go is given a
// fake clock; one whose server keeps time returns a Harness without Advance.
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Harness {
			clock := storetest.NewClock(time.Now())
			store, err := idempotency.NewMemoryStore(idempotency.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			return storetest.Harness{Store: store, Advance: clock.Advance}
		})
	}
}
