package ratelimit

import (
	"errors"
	"strconv"
	"time"
)

// ErrLimited matches, with errors.Is, the error of a request that its limiter
// did not let through: a Wait whose wait would outlast the context's
// deadline, an Allow while the key has no budget left, or a Transport request
// refused for either reason. The error is a *LimitedError that says how long
// to wait.
var ErrLimited = errors.New("ratelimit: limited")

// ErrTooManyKeys matches the error of a request whose key is new while the
// limiter already holds its maximum number of keys (WithMaxKeys) and none of
// them is idle. The request is not let through: a quota limiter fails closed.
var ErrTooManyKeys = errors.New("ratelimit: too many keys")

// LimitedError is the error of a request that its limiter did not let
// through, because the wait for its key's budget would outlast the caller's
// deadline (Wait, Transport) or because the key has no budget now (Allow).
// Nothing was taken from the budget.
//
// It speaks the error protocol of package retry: RetryAfter returns Delay, so
// retry and the outbox relay treat it like a 429 with a Retry-After.
// errors.Is(err, ErrLimited) holds.
type LimitedError struct {
	// Key is the limiter key (at most 512 bytes; see Limiter).
	Key string
	// Delay is how long from the decision until the key would have budget
	// for one request.
	Delay time.Duration
}

// Error says which key is limited and for how long.
func (e *LimitedError) Error() string {
	b := make([]byte, 0, 48+len(e.Key))
	b = append(b, "ratelimit: key "...)
	b = strconv.AppendQuote(b, e.Key)
	b = append(b, " is limited for "...)
	b = append(b, e.Delay.String()...)
	return string(b)
}

// RetryAfter returns Delay.
func (e *LimitedError) RetryAfter() time.Duration { return e.Delay }

// Unwrap returns ErrLimited.
func (e *LimitedError) Unwrap() error { return ErrLimited }
