package outboxtest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
)

// A Recorder stands in for a real publisher: Fail decides each publish's
// result, Delivered and Calls say what happened.
func ExampleRecorder() {
	rec := &outboxtest.Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if d.Attempt == 1 {
			return errors.New("503 on the first attempt")
		}
		return nil
	}}
	ctx := context.Background()
	_ = rec.Publish(ctx, outbox.Delivery{Message: outbox.Message{Topic: "t"}, Attempt: 1})
	_ = rec.Publish(ctx, outbox.Delivery{Message: outbox.Message{Topic: "t"}, Attempt: 2})
	fmt.Println(len(rec.Calls()), len(rec.Delivered()), rec.Delivered()[0].Attempt)
	// Output: 2 1 2
}
