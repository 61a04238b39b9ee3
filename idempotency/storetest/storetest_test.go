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

// The suite against the memory store, once with a fake clock and once in
// real time, the way a store whose server keeps time runs it.
func TestMemoryStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		clock := storetest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
		s, err := idempotency.NewMemoryStore(idempotency.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Harness{Store: s, Advance: clock.Advance}
	})
}

func TestMemoryStoreRealTime(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		s, err := idempotency.NewMemoryStore()
		if err != nil {
			t.Fatal(err)
		}
		return storetest.Harness{Store: s, Short: 30 * time.Millisecond}
	})
}

func TestClock(t *testing.T) {
	t.Parallel()
	start := time.Unix(100, 0)
	c := storetest.NewClock(start)
	c.Advance(time.Second)
	if got, want := c.Now(), start.Add(time.Second); !got.Equal(want) {
		t.Fatalf("Now after Advance(1s) = %v; want %v", got, want)
	}
}
