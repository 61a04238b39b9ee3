package storetest_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The suite against the memory store, in real time, the way a store whose
// server keeps time runs it.
func TestMemoryStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		s, err := idempotency.NewMemoryStore()
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Harness{Store: s, Short: 30 * time.Millisecond}
	})
}
