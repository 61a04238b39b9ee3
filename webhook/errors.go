package webhook

import "errors"

// Verification errors. Verify methods return an error that matches exactly
// one of them with errors.Is, wrapped with detail where it helps the sender
// find its mistake.
var (
	// ErrMissingHeader means a header the scheme requires is absent or empty.
	ErrMissingHeader = errors.New("webhook: missing header")
	// ErrInvalidHeader means a header is present but malformed: a timestamp
	// that is not a non-negative integer, a Stripe header without t=.
	ErrInvalidHeader = errors.New("webhook: invalid header")
	// ErrTimestampOutOfRange means the signed timestamp is further from the
	// verifier's clock than the tolerance, in the past or in the future.
	ErrTimestampOutOfRange = errors.New("webhook: timestamp outside tolerance")
	// ErrNoMatchingSignature means no signature in the header matches any of
	// the verifier's secrets for this message.
	ErrNoMatchingSignature = errors.New("webhook: no matching signature")
)

// ErrInvalidSecret is returned by the constructors for a secret that is
// empty, not encoded as the scheme requires, or too short: an HMAC key
// (v1, Stripe) of fewer than 24 bytes, the Standard Webhooks minimum. The
// error names the secret by its position, never by its value.
var ErrInvalidSecret = errors.New("webhook: invalid secret")
