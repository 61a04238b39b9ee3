package webhook

import "errors"

// Verification errors. Verify methods return an error that matches exactly
// one of them with errors.Is, wrapped with detail where it helps the sender
// find its mistake (a method called on a nil verifier returns an error that
// matches none).
var (
	// ErrMissingHeader means a header the scheme requires is absent or empty.
	ErrMissingHeader = errors.New("webhook: missing header")
	// ErrInvalidHeader means a header is present but malformed. Headers are
	// parsed strictly, so that a malformed one is never read one way here
	// and another way elsewhere: a timestamp that is not a non-negative
	// integer; a webhook-id that is not visible ASCII; webhook-id,
	// webhook-timestamp or stripe-signature given twice; a signature header
	// of more than 10 signatures or 2 KiB; a v1 or v1a signature that is not
	// base64 ("v1,t=1") when no other signature matches; a Stripe header that
	// is not comma-separated key=value parts with exactly one t.
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
