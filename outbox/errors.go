package outbox

import (
	"errors"
	"fmt"
	"time"
)

// ErrPaused is matched (with errors.Is) by a publish error that means the
// destination cannot take messages now: an open circuit breaker, an endpoint
// that answered 410 Gone. The relay holds the destination's messages without
// spending their attempts (see Pause).
var ErrPaused = errors.New("outbox: destination paused")

// Pause returns err marked so that it matches ErrPaused and asks the relay to
// pause the message's destination for d (0 means the relay's default: see
// WithPause). The relay records the pause in the store, once: every relay
// then stops claiming the destination's messages, the ones already claimed
// are released unpublished within a poll interval, with their schedule and
// attempts kept, and the pause survives restarts. It ends after d, or when
// an operator lifts it (Store.Resume, outboxctl resume). d is not capped by
// WithMaxRetryAfter. The returned error unwraps to err; a nil err stands for
// ErrPaused itself.
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

// ErrInvalid is matched by the error of a store's Enqueue when a message
// cannot be stored as it is; see InvalidMessageError.
var ErrInvalid = errors.New("outbox: invalid message")

// InvalidMessageError says which message of an Enqueue call was refused and
// why. It matches ErrInvalid. Nothing of the call was written.
type InvalidMessageError struct {
	// Index is the message's index in the Enqueue call.
	Index int
	// Reason says what is wrong, such as "empty topic".
	Reason string
}

// Error names the message and the reason.
func (e *InvalidMessageError) Error() string {
	return fmt.Sprintf("outbox: message %d: %s", e.Index, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *InvalidMessageError) Is(target error) bool { return target == ErrInvalid }

// ErrNotFound is matched by the error of Store.Get for an unknown id.
var ErrNotFound = errors.New("outbox: message not found")

// ErrPublishTimeout is the cause of a publish context cut off by the relay's
// publish timeout (see WithPublishTimeout).
var ErrPublishTimeout = errors.New("outbox: publish timed out")

// ErrStopped is returned by Start after Stop, and is the cause of the
// context of a publish cut off by Stop.
var ErrStopped = errors.New("outbox: relay stopped")
