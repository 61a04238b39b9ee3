package idempotency

import (
	"errors"
	"strconv"
)

var (
	// ErrInProgress is returned by Do when the key is held by work running
	// elsewhere (another process, or a caller whose fingerprint differs) and
	// it did not finish within the wait (WithWait).
	ErrInProgress = errors.New("idempotency: key in progress elsewhere")

	// ErrFingerprintMismatch is returned by Do when the key was first used
	// with another fingerprint: the same key for different input. The stored
	// record is left as it was.
	ErrFingerprintMismatch = errors.New("idempotency: key reused with a different fingerprint")

	// ErrKeyMissing is returned by a KeySource when the request carries no
	// key.
	ErrKeyMissing = errors.New("idempotency: key missing")

	// ErrNotStored is returned by Do, wrapped with the store's error, when
	// the work ran and succeeded but its result could not be stored. Do
	// returns the result along with it. If the store failed for a while (it
	// was unreachable, or the lease was lost while the work ran), a later
	// call with the same key may run the work again. If the store refused
	// the result for good (ErrTooLarge), Do stores a marker instead: every
	// later call with the key gets an error wrapping ErrNotStored, without a
	// result, and the work does not run again.
	ErrNotStored = errors.New("idempotency: result not stored")
)

// Final marks err as a final outcome of the work: Do stores it, as it stores
// a result, instead of releasing the claim, and replays it to every later
// caller with the same key. Use it for errors that running the work again
// would only repeat (a declined card, a validation error). Final(nil) is nil.
// The returned error unwraps to err; errors.As finds the *FinalError.
func Final(err error) error {
	if err == nil {
		return nil
	}
	var f *FinalError
	if errors.As(err, &f) {
		return err
	}
	return &FinalError{Err: err}
}

// FinalError is an error marked by Final. On the call that ran the work, Do
// returns the error the function returned; on a replay, Do returns a
// *FinalError with Replayed set whose Err carries the original message (its
// type and chain do not survive storage).
type FinalError struct {
	// Err is the error that the work returned.
	Err error
	// Replayed is true when the error comes from the store, not from a run
	// of the work.
	Replayed bool
}

// Error returns the message of Err.
func (e *FinalError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *FinalError) Unwrap() error { return e.Err }

func isFinal(err error) bool {
	var f *FinalError
	return errors.As(err, &f)
}

// notStoredError is the error of a result that was not stored: it wraps
// ErrNotStored and the reason.
type notStoredError struct {
	key    string
	reason error
}

func (e *notStoredError) Error() string {
	return "idempotency: the result of " + strconv.Quote(e.key) + " was not stored: " + e.reason.Error()
}

func (e *notStoredError) Unwrap() []error { return []error{ErrNotStored, e.reason} }
