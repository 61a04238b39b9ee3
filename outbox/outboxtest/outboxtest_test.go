package outboxtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
		r.WaitFor(t, time.Minute, 1)
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
