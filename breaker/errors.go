package breaker

import (
	"errors"
	"fmt"
	"time"
)

// ErrOpen is matched (with errors.Is) by every error a breaker returns
// instead of running the call because the circuit does not accept calls: the
// circuit is open (an [*OpenError]) or half-open with all its probes taken
// ([ErrProbeLimit]).
var ErrOpen = errors.New("breaker: circuit open")

// ErrProbeLimit is returned while the circuit is half-open and the number of
// probes allowed by [WithHalfOpenProbes] is already taken. It matches
// [ErrOpen]. It asks for no particular delay.
var ErrProbeLimit = fmt.Errorf("%w: half-open, probe limit reached", ErrOpen)

// ErrBulkheadFull is returned when the bulkhead set by [WithBulkhead] has no
// free slot within its bounded wait. The call did not run and is not counted
// by the breaker.
var ErrBulkheadFull = errors.New("breaker: bulkhead full")

// ErrGroupFull is returned by [Group.Get] (and by [Transport] for a new host)
// when the group holds its maximum number of breakers ([WithMaxBreakers]) and
// none of them can be evicted (every one is in use, open or half-open).
var ErrGroupFull = errors.New("breaker: group full")

// OpenError is the error returned while the circuit is open. It matches
// [ErrOpen] and speaks the error protocol of package retry: RetryAfter
// returns the remaining open time, so a retry loop can wait it out or give
// up at once without importing this package.
//
// One OpenError is made per open period and shared by all the calls it
// rejects (so rejecting allocates nothing); treat it as read-only.
type OpenError struct {
	// Name is the name of the breaker (the key in a Group, the host in a
	// Transport).
	Name string
	// Until is when the open period ends and the breaker lets probes through
	// (wall clock).
	Until time.Time
	// Shared reports whether the circuit is open because the shared state
	// (a [Syncer]) says so rather than this process's own counts.
	Shared bool
}

// Error implements error.
func (e *OpenError) Error() string {
	return fmt.Sprintf("breaker: circuit %q open for another %v", e.Name, e.RetryAfter().Round(time.Millisecond))
}

// RetryAfter returns the open time remaining now, zero once it has passed.
func (e *OpenError) RetryAfter() time.Duration {
	return max(0, time.Until(e.Until))
}

// Is reports whether target is [ErrOpen].
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// Unwrap returns [ErrOpen].
func (e *OpenError) Unwrap() error { return ErrOpen }
