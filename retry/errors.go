package retry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrGaveUp matches, with errors.Is, every error by which a Policy or a
// Transport says it stopped retrying a call that was still failing: a
// *GaveUpError or a *RetryAfterError. It does not match a permanent or
// non-retryable error, which is returned as it is, nor the caller's own
// cancellation.
var ErrGaveUp = errors.New("retry: gave up")

// Reasons carried by GaveUpError.Reason. Each one matches the error with
// errors.Is.
var (
	// ErrAttemptsExhausted: the last of the policy's attempts failed.
	ErrAttemptsExhausted = errors.New("retry: attempts exhausted")
	// ErrDeadlineTooClose: the next wait would end at or after the caller's
	// deadline, so it was not started.
	ErrDeadlineTooClose = errors.New("retry: next wait ends after the context's deadline")
	// ErrBudgetExhausted: the retry budget refused the retry (too many
	// retries among recent requests).
	ErrBudgetExhausted = errors.New("retry: retry budget exhausted")
	// ErrRetryAfterTooLong: the failure asked for a delay (Retry-After) beyond
	// the policy's maximum or beyond the caller's deadline. The error is then a
	// *RetryAfterError that carries the delay.
	ErrRetryAfterTooLong = errors.New("retry: asked delay exceeds the limit")
	// ErrBackOffStop: a custom backoff.BackOff (WithBackOffFunc) returned
	// backoff.Stop.
	ErrBackOffStop = errors.New("retry: backoff stopped")
	// ErrBodyNotRewindable: the request should have been retried but its body
	// cannot be sent again (it is not nil or http.NoBody and the request has
	// no GetBody).
	ErrBodyNotRewindable = errors.New("retry: request body cannot be rewound (no GetBody)")
)

// ErrAttemptTimeout is the cause (see context.Cause) set on an attempt's
// context when the policy's per-attempt timeout (WithAttemptTimeout) expires,
// and it is in the chain of the error an attempt that timed out returns, so
// errors.Is(err, ErrAttemptTimeout) tells a slow attempt from the caller
// giving up. It also matches context.DeadlineExceeded and is a net.Error whose
// Timeout method reports true, so code that looks for a timeout finds one.
var ErrAttemptTimeout error = &attemptTimeoutError{}

type attemptTimeoutError struct{}

func (*attemptTimeoutError) Error() string   { return "retry: attempt timed out" }
func (*attemptTimeoutError) Timeout() bool   { return true }
func (*attemptTimeoutError) Temporary() bool { return true }
func (*attemptTimeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// GaveUpError is the error of a call that was still failing when the policy
// stopped retrying it. errors.Is(err, ErrGaveUp) and errors.Is(err, Reason)
// hold; Unwrap returns the last attempt's error, so errors.Is and errors.As see
// the last cause too.
type GaveUpError struct {
	// Attempts is the number of attempts made (at least 1).
	Attempts int
	// LastStatus is the HTTP status code of the last attempt's response, or 0
	// when it had none (a transport error, or a function call).
	LastStatus int
	// Reason says why the policy stopped: ErrAttemptsExhausted,
	// ErrDeadlineTooClose, ErrBudgetExhausted, ErrRetryAfterTooLong,
	// ErrBackOffStop or ErrBodyNotRewindable.
	Reason error
	// Err is the last attempt's error. For an HTTP response that was
	// retryable it is a *StatusError.
	Err error
}

// Error describes the give-up, its reason and the last error.
func (e *GaveUpError) Error() string {
	b := make([]byte, 0, 96)
	b = append(b, "retry: gave up after "...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	if e.Attempts == 1 {
		b = append(b, " attempt"...)
	} else {
		b = append(b, " attempts"...)
	}
	if e.Reason != nil {
		b = append(b, " ("...)
		b = append(b, strings.TrimPrefix(e.Reason.Error(), "retry: ")...)
		b = append(b, ')')
	}
	if e.Err != nil {
		b = append(b, ": "...)
		b = append(b, e.Err.Error()...)
	}
	return string(b)
}

// Unwrap returns the last attempt's error.
func (e *GaveUpError) Unwrap() error { return e.Err }

// Is reports whether target is ErrGaveUp or matches the Reason.
func (e *GaveUpError) Is(target error) bool {
	return target == ErrGaveUp || (e.Reason != nil && errors.Is(e.Reason, target))
}

// RetryAfterError is the error of a call whose failure asked for a delay
// (an HTTP Retry-After, or an error with a RetryAfter method) longer than the
// policy accepts (WithMaxRetryAfter) or longer than the time left before the
// caller's deadline. The policy returns it at once, without waiting.
//
// It speaks the error protocol: its RetryAfter method returns Delay, so an
// outer scheduler (the outbox relay, a job queue) can come back later.
// errors.Is(err, ErrGaveUp) and errors.Is(err, ErrRetryAfterTooLong) hold, and
// errors.As finds the *GaveUpError it wraps and the last cause below it.
type RetryAfterError struct {
	// Delay is the delay that was asked for.
	Delay time.Duration
	// Limit is what was allowed: the policy's maximum, or the time left
	// before the caller's deadline, whichever was smaller.
	Limit time.Duration
	// GaveUp holds the attempt count, the last status and the last cause;
	// its Reason is ErrRetryAfterTooLong.
	GaveUp *GaveUpError
}

// Error describes the asked delay and the limit.
func (e *RetryAfterError) Error() string {
	attempts, last := 0, error(nil)
	if e.GaveUp != nil {
		attempts, last = e.GaveUp.Attempts, e.GaveUp.Err
	}
	return fmt.Sprintf("retry: gave up after %d attempt(s): asked to wait %v, more than the %v allowed: %v",
		attempts, e.Delay, e.Limit, last)
}

// Unwrap returns the *GaveUpError.
func (e *RetryAfterError) Unwrap() error { return e.GaveUp }

// RetryAfter returns Delay.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.Delay }

// StatusError is the error a Transport records for a response whose status
// made it retry (408, 429, 500, 502, 503, 504). It is the Err of a
// *GaveUpError when the last attempt got such a response, and what the
// OnRetry hook receives for it.
type StatusError struct {
	// StatusCode is the response's status code.
	StatusCode int
}

// Error returns "HTTP " and the status, such as "HTTP 503 Service
// Unavailable".
func (e *StatusError) Error() string {
	return "HTTP " + strconv.Itoa(e.StatusCode) + " " + http.StatusText(e.StatusCode)
}
