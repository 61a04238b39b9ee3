// Package webhook signs and verifies webhooks, so that a receiver trusts only
// what its sender signed.
//
// It implements Standard Webhooks (https://www.standardwebhooks.com): the
// headers webhook-id, webhook-timestamp and webhook-signature, where the
// signature is computed over "id.timestamp.body". Two schemes are supported:
//
//   - v1: HMAC-SHA256 with a symmetric secret, written "whsec_" followed by
//     the base64 of 24 to 64 random bytes (the prefix is optional on input;
//     EncodeSecret writes it);
//   - v1a: ed25519, with a private key "whsk_…" to sign and a public key
//     "whpk_…" to verify (EncodeKeyPair writes both).
//
// A signature header may carry several space-separated signatures, one per
// secret, so that secrets can be rotated without downtime: a Signer made with
// two secrets signs with both, and a Verifier accepts a message when any
// signature matches any of its secrets. Timestamps are checked in both
// directions against a tolerance (5 minutes by default) so that a captured
// message cannot be replayed later. Every comparison runs in constant time.
// A signature header is read before anything is authenticated, so it is
// bounded: more than 10 signatures, or more than 2 KiB, and it is refused as
// invalid before any signature is checked.
//
// StripeVerifier verifies the "t=…,v1=…" headers of Stripe and of the
// providers that copied its scheme.
//
// NewMiddleware verifies requests before anything parses their bodies: it
// reads the raw body (bounded; 413 beyond the limit), verifies it, answers
// 401 with an RFC 9457 problem+json body when verification fails (its type,
// https://steadfast-go.github.io/problems/webhook-signature-invalid, is
// stable), and hands the body on intact to the next handler. It composes in front of
// idempotency.Middleware keyed by the webhook-id header, so that a webhook
// delivered several times is processed once and a forged one never reaches
// the handler.
//
// One Option type configures every constructor: WithTolerance and WithClock
// apply to NewVerifier and NewStripeVerifier, WithMaxBodyBytes, WithLogger
// and WithMeterProvider to NewMiddleware. A constructor refuses an invalid
// option, or one that does not apply to it, with an error naming it. No
// input, option or nil argument makes the package panic: nil verifiers and
// signers return errors.
//
// Signer, Verifier and StripeVerifier are immutable after construction and
// safe for concurrent use.
package webhook
