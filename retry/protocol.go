package retry

import (
	"errors"
	"time"
)

// The error protocol. Any error can tell a retry loop two things without the
// loop importing the package that made it:
//
//   - that it is permanent: it has a method Permanent() bool that returns true;
//   - that it asks for a delay: it has a method RetryAfter() time.Duration.
//
// Permanent and After mark errors this way; IsPermanent and RetryAfter read
// the marks anywhere in an error's chain. breaker.ErrOpen and the outbox
// publishers speak the same protocol.

// Permanent returns err marked as permanent: Do stops at once and returns it.
// The returned error unwraps to err. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err or any error in its chain has a method
// Permanent() bool that returns true.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// After returns err marked with a request to wait d before the next attempt,
// as an HTTP Retry-After does. The returned error unwraps to err. After(nil, d)
// is nil.
func After(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &afterError{err: err, d: d}
}

// RetryAfter returns the delay asked for by err or the first error in its
// chain with a method RetryAfter() time.Duration, and whether one asked.
func RetryAfter(err error) (time.Duration, bool) {
	var a interface{ RetryAfter() time.Duration }
	if errors.As(err, &a) {
		return a.RetryAfter(), true
	}
	return 0, false
}

type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

type afterError struct {
	err error
	d   time.Duration
}

func (e *afterError) Error() string             { return e.err.Error() }
func (e *afterError) Unwrap() error             { return e.err }
func (e *afterError) RetryAfter() time.Duration { return e.d }
