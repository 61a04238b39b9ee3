package retry

import (
	"context"
	"time"
)

// sleep waits d, or until ctx is done; it returns ctx.Err() in the latter
// case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// withAttemptTimeout returns a child of ctx that is cancelled with cause
// ErrAttemptTimeout after d. It carries a deadline that lower layers
// (dialers, drivers) see.
func withAttemptTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, ErrAttemptTimeout)
}
