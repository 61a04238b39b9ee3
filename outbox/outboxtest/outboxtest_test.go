package outboxtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestClock(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := outboxtest.NewClock(start)
	a, b := c.After(time.Second), c.After(3*time.Second)
	if n, _ := c.Waiters(); n != 2 {
		t.Fatalf("Waiters = %d", n)
	}
	c.Advance(2 * time.Second)
	select {
	case got := <-a:
		if !got.Equal(start.Add(2 * time.Second)) {
			t.Errorf("fired at %v", got)
		}
	default:
		t.Fatal("the 1 s timer did not fire after 2 s")
	}
	select {
	case <-b:
		t.Fatal("the 3 s timer fired after 2 s")
	default:
	}
	c.Advance(time.Second)
	<-b
	if now := c.Now(); !now.Equal(start.Add(3 * time.Second)) {
		t.Errorf("Now = %v", now)
	}
	select {
	case <-c.After(0):
	default:
		t.Error("After(0) did not fire at once")
	}
}

func TestRecorder(t *testing.T) {
	t.Parallel()
	r := &outboxtest.Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if d.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		return nil
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.WaitFor(t, time.Minute, outboxtest.Count(1))
	}()
	ctx := context.Background()
	if err := r.Publish(ctx, outbox.Delivery{Attempt: 1}); err == nil {
		t.Error("Fail was not applied")
	}
	if err := r.Publish(ctx, outbox.Delivery{Attempt: 2}); err != nil {
		t.Error(err)
	}
	<-done
	if len(r.Calls()) != 2 || len(r.Delivered()) != 1 {
		t.Errorf("calls %d delivered %d", len(r.Calls()), len(r.Delivered()))
	}
}

// Clock drives a relay's timers in tests: nothing fires until Advance.
func ExampleClock() {
	c := outboxtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	timer := c.After(time.Minute)
	c.Advance(30 * time.Second)
	select {
	case <-timer:
		fmt.Println("fired early")
	default:
		fmt.Println("not yet")
	}
	c.Advance(30 * time.Second)
	fmt.Println((<-timer).Format(time.TimeOnly))
	// Output:
	// not yet
	// 00:01:00
}
