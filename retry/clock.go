package retry

import (
	"context"
	"sync"
	"time"
)

// Clock is the time source of a Policy: the current time (for the deadline
// check and the retry budget's window), the timers of the waits between
// attempts and the per-attempt timeout. The default is the system clock.
// Tests inject a fake one so that nothing sleeps for real. Implementations
// must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer whose channel receives once d has elapsed.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine once d has elapsed, unless the
	// returned timer is stopped first. Its timer's C may be nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer made by a Clock, as *time.Timer is one made by package
// time.
type Timer interface {
	// C returns the channel that receives when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// systemClock is the Clock of package time.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer {
	return sysTimer{time.AfterFunc(d, f)}
}

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }

// sleep waits d on clk, or until ctx is done; it returns ctx.Err() in the
// latter case. clk nil means the system clock.
func sleep(ctx context.Context, clk Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	if clk == nil {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	t := clk.NewTimer(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// withAttemptTimeout returns a child of ctx that is cancelled with cause
// ErrAttemptTimeout after d. With the system clock it is
// context.WithTimeoutCause, so the attempt's context carries a deadline that
// lower layers (dialers, drivers) see. With an injected clock the timeout is
// a timer of that clock.
func withAttemptTimeout(ctx context.Context, clk Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if clk == nil {
		return context.WithTimeoutCause(ctx, d, ErrAttemptTimeout)
	}
	actx, cancel := context.WithCancelCause(ctx)
	t := clk.AfterFunc(d, func() { cancel(ErrAttemptTimeout) })
	var once sync.Once
	return actx, func() {
		once.Do(func() {
			t.Stop()
			cancel(context.Canceled)
		})
	}
}
