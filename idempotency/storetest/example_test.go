package storetest_test

import (
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
)

// A backend's conformance test: a fresh store per case, and a short lease
// for the cases about expiry.
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Harness {
			store, err := idempotency.NewMemoryStore()
			if err != nil {
				t.Fatal(err)
			}
			return storetest.Harness{Store: store, Short: 50 * time.Millisecond}
		})
	}
}
