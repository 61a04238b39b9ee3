package outbox

import (
	"errors"
	"time"
)

// ErrPaused is matched (with errors.Is) by a publish error that means the
// destination cannot take messages now: an open circuit breaker, an endpoint
// that answered 410 Gone. The relay holds the destination's messages without
// spending their attempts.
var ErrPaused = errors.New("outbox: destination paused")

// Pause returns err marked so that it matches ErrPaused and asks the relay to
// hold the destination for d (0 means the relay's default pause). The
// returned error unwraps to err.
func Pause(err error, d time.Duration) error {
	if err == nil {
		err = ErrPaused
	}
	return &pausedError{err: err, d: d}
}

type pausedError struct {
	err error
	d   time.Duration
}

func (e *pausedError) Error() string             { return "outbox: destination paused: " + e.err.Error() }
func (e *pausedError) Unwrap() error             { return e.err }
func (e *pausedError) Is(target error) bool      { return target == ErrPaused }
func (e *pausedError) RetryAfter() time.Duration { return e.d }
