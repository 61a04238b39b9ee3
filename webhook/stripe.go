package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// stripeHeader is the header that carries Stripe-style signatures.
const stripeHeader = "Stripe-Signature"

// StripeVerifier verifies Stripe-style signature headers,
// "t=<unix>,v1=<hex>[,v1=<hex>…]": HMAC-SHA256 over "t.body" keyed with the
// secret's bytes as given (Stripe's "whsec_…" string is used whole, unlike
// Standard Webhooks). The header is parsed strictly, as Stripe's own
// libraries do: a part that is not key=value, or a second t, makes it
// invalid. Entries of other schemes (v0) are ignored, so a header with no v1
// entry fails. It is immutable and safe for concurrent use.
type StripeVerifier struct {
	cfg  config
	keys []*hmacKey
	// onCheck, when set (only by tests), is called once per signature
	// compared.
	onCheck func()
}

// NewStripeVerifier returns a StripeVerifier that accepts a message signed
// with any of secrets (several while a secret rolls). Its options are
// WithTolerance and WithClock; the tolerance applies in both directions,
// 5 minutes by default.
//
// It returns an error matching ErrInvalidSecret when no secret is given or
// one is shorter than 24 bytes (Stripe's are 38), and an error naming the option when an option is invalid or
// does not apply to a verifier.
func NewStripeVerifier(secrets []string, opts ...Option) (*StripeVerifier, error) {
	cfg := defaultConfig()
	if err := applyOptions(ctorStripeVerifier, &cfg, opts); err != nil {
		return nil, err
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	v := &StripeVerifier{cfg: cfg}
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("%w: secret %d is empty", ErrInvalidSecret, i)
		}
		if len(s) < minHMACKey {
			return nil, fmt.Errorf("%w: secret %d is %d bytes; an HMAC key must be at least %d bytes", ErrInvalidSecret, i, len(s), minHMACKey)
		}
		v.keys = append(v.keys, newHMACKey([]byte(s)))
	}
	return v, nil
}

// Verify checks the Stripe-Signature header of h against payload, the raw
// request body, with the same errors as VerifyHeader.
func (v *StripeVerifier) Verify(h http.Header, payload []byte) error {
	if v == nil {
		return errNilVerifier
	}
	header, err := singleValue(h, stripeHeader)
	if err != nil {
		return err
	}
	return v.VerifyHeader(header, payload)
}

// VerifyHeader checks a Stripe-Signature header value against payload. It
// returns nil when t is within the tolerance and one v1 signature matches one
// secret; otherwise an error that matches ErrMissingHeader, ErrInvalidHeader,
// ErrTimestampOutOfRange or ErrNoMatchingSignature. A header of more than 10
// signatures or 2 KiB is refused as invalid before any is checked. A nil
// StripeVerifier returns an error.
func (v *StripeVerifier) VerifyHeader(header string, payload []byte) error {
	if v == nil {
		return errNilVerifier
	}
	if header == "" {
		return fmt.Errorf("%w: stripe-signature", ErrMissingHeader)
	}
	var sh stripeSignature
	if err := sh.parse(header); err != nil {
		return err
	}
	if _, err := v.cfg.checkTimestamp(sh.t); err != nil {
		return err
	}
	var cand [sha256.Size]byte
	var srcHex [2 * sha256.Size]byte
	for _, k := range v.keys {
		st := k.get()
		st.buf = append(st.buf[:0], sh.t...)
		st.buf = append(st.buf, '.')
		st.mac.Write(st.buf)
		st.mac.Write(payload)
		sum := st.mac.Sum(st.buf[:0])
		ok := false
		for _, sig := range sh.v1[:sh.n] {
			if len(sig) != len(srcHex) {
				continue
			}
			if _, err := hex.Decode(cand[:], srcHex[:copy(srcHex[:], sig)]); err != nil {
				continue
			}
			if v.onCheck != nil {
				v.onCheck()
			}
			if hmac.Equal(cand[:], sum) {
				ok = true
			}
		}
		st.buf = sum[:0]
		k.put(st)
		if ok {
			return nil
		}
	}
	return ErrNoMatchingSignature
}

// stripeSignature is a parsed Stripe-Signature header.
type stripeSignature struct {
	t  string                // the timestamp, as sent (it is signed as sent)
	n  int                   // entries in v1
	v1 [maxSignatures]string // the v1 signatures
}

// parse reads "t=<unix>,v1=<hex>[,v1=<hex>…]" strictly: every
// comma-separated part (spaces around it allowed) is key=value with a key of
// lower-case letters and digits and a non-empty value without spaces, and t
// appears exactly once. Anything else is an invalid header, not a header to
// read one way or another. It is bounded as a Standard Webhooks signature
// header is: at most maxSignatureBytes, and at most maxSignatures signatures
// of any scheme.
func (s *stripeSignature) parse(header string) error {
	if len(header) > maxSignatureBytes {
		return fmt.Errorf("%w: stripe-signature is longer than %d bytes", ErrInvalidHeader, maxSignatureBytes)
	}
	found, sigs := false, 0
	i := 0
	for part := range strings.SplitSeq(header, ",") {
		i++
		k, val, ok := strings.Cut(strings.Trim(part, " \t"), "=")
		if !ok || !isStripeKey(k) || val == "" || strings.ContainsAny(val, " \t") {
			return fmt.Errorf("%w: stripe-signature part %d is not key=value", ErrInvalidHeader, i)
		}
		if k == "t" {
			if found {
				return fmt.Errorf("%w: stripe-signature has more than one t=", ErrInvalidHeader)
			}
			s.t, found = val, true
			continue
		}
		if sigs++; sigs > maxSignatures {
			return fmt.Errorf("%w: stripe-signature has more than %d signatures", ErrInvalidHeader, maxSignatures)
		}
		if k == "v1" {
			s.v1[s.n] = val
			s.n++
		}
	}
	if !found {
		return fmt.Errorf("%w: stripe-signature has no t= timestamp", ErrInvalidHeader)
	}
	return nil
}

// isStripeKey reports whether k is a non-empty run of lower-case letters
// and digits (t, v1, v0).
func isStripeKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
