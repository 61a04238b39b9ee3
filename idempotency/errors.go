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

	// ErrKeyMissing is returned by a KeySource, and by ParseKey, when the
	// request carries no key.
	ErrKeyMissing = errors.New("idempotency: key missing")

	// ErrKeyInvalid is returned, wrapped with the reason, by a KeySource and
	// by ParseKey when the request's key is malformed, too long or given more
	// than once.
	ErrKeyInvalid = errors.New("idempotency: key invalid")
)

// Final marks err as a final outcome of the work: Do stores it, as it stores
// a result, instead of releasing the claim, and replays it to every later
// caller with the same key. Use it for errors that running the work again
// would only repeat (a declined card, a validation error). Final(nil) is nil.
// The returned error unwraps to err.
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

// IsFinal reports whether err or an error in its chain was marked by Final.
func IsFinal(err error) bool {
	var f *FinalError
	return errors.As(err, &f)
}

// NotStoredError is returned by Do when the work ran and succeeded but its
// result could not be stored: the store failed, or the lease was lost
// (ErrLeaseLost) while the work ran. Do returns the result along with it; a
// later call with the same key may run the work again.
type NotStoredError struct {
	// Key is the key whose result was not stored.
	Key string
	// Err is the store's error.
	Err error
}

// Error describes the failure.
func (e *NotStoredError) Error() string {
	return "idempotency: result of " + strconv.Quote(e.Key) + " not stored: " + e.Err.Error()
}

// Unwrap returns Err.
func (e *NotStoredError) Unwrap() error { return e.Err }
