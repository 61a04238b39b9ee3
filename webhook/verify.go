package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// checkTimestamp parses a decimal, non-negative Unix timestamp and checks it
// against the tolerance.
func (c *config) checkTimestamp(ts string) (int64, error) {
	unix, ok := parseUnix(ts)
	if !ok {
		return 0, fmt.Errorf("%w: timestamp %.32q is not a non-negative integer of seconds", ErrInvalidHeader, ts)
	}
	tol := int64(c.tolerance / time.Second)
	now := c.now().Unix()
	if now-unix > tol {
		return 0, fmt.Errorf("%w: timestamp %d is %ds in the past (tolerance %ds)", ErrTimestampOutOfRange, unix, now-unix, tol)
	}
	if unix-now > tol {
		return 0, fmt.Errorf("%w: timestamp %d is %ds in the future (tolerance %ds)", ErrTimestampOutOfRange, unix, unix-now, tol)
	}
	return unix, nil
}

// parseUnix accepts 1 to 18 decimal digits: no sign, no spaces, no
// overflow.
func parseUnix(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Canonical names of the Standard Webhooks headers.
const (
	headerID        = "Webhook-Id"
	headerTimestamp = "Webhook-Timestamp"
	headerSignature = "Webhook-Signature"
)

var errNilVerifier = errors.New("webhook: Verify called on a nil verifier")

// Verifier verifies Standard Webhooks signatures. It is immutable and safe
// for concurrent use.
type Verifier struct {
	cfg   config
	hmacs []*hmacKey
	pubs  []ed25519.PublicKey
	// onCheck, when set (only by tests), is called once per signature
	// compared with a v1 signature or verified with a v1a key.
	onCheck func()
}

// NewVerifier returns a Verifier that accepts a message signed with any of
// secrets: "whsec_…" secrets (the prefix is optional) verify v1 signatures,
// "whpk_…" public keys verify v1a signatures. Give the old and the new secret
// while a sender rotates. Its options are WithTolerance and WithClock.
//
// It returns an error matching ErrInvalidSecret when no secret is given or
// one is malformed, or a v1 secret decodes to fewer than 24 bytes (the
// Standard Webhooks minimum), and an error naming the option when an option is
// invalid or does not apply to a verifier.
func NewVerifier(secrets []string, opts ...Option) (*Verifier, error) {
	cfg := defaultConfig()
	if err := applyOptions(ctorVerifier, &cfg, opts); err != nil {
		return nil, err
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	v := &Verifier{cfg: cfg}
	for i, sec := range secrets {
		if strings.HasPrefix(sec, publicKeyPrefix) {
			k, err := parsePublicKey(i, sec)
			if err != nil {
				return nil, err
			}
			v.pubs = append(v.pubs, k)
			continue
		}
		if strings.HasPrefix(sec, privateKeyPrefix) {
			return nil, fmt.Errorf("%w: secret %d is a private key (%q); give the receiver the public key (%q)", ErrInvalidSecret, i, privateKeyPrefix, publicKeyPrefix)
		}
		k, err := parseSymmetric(i, sec)
		if err != nil {
			return nil, err
		}
		v.hmacs = append(v.hmacs, k)
	}
	return v, nil
}

// Verify checks the Standard Webhooks headers of h against payload, the raw
// request body. It returns nil when the timestamp is within the tolerance and
// one of the signatures matches one of the secrets; otherwise an error that
// matches ErrMissingHeader, ErrInvalidHeader, ErrTimestampOutOfRange or
// ErrNoMatchingSignature. A webhook-signature header (all its fields
// together) of more than 10 signatures or 2 KiB is refused as invalid before
// any signature is checked, so that forged ones cost little. A nil Verifier
// returns an error.
func (v *Verifier) Verify(h http.Header, payload []byte) error {
	if v == nil {
		return errNilVerifier
	}
	id, err := singleValue(h, headerID)
	if err != nil {
		return err
	}
	timestamp, err := singleValue(h, headerTimestamp)
	if err != nil {
		return err
	}
	return v.verify(id, timestamp, headerValues(h, headerSignature), payload)
}

// VerifyValues is Verify for callers that hold the three header values
// rather than an http.Header (a message from a queue, a stored request).
func (v *Verifier) VerifyValues(id, timestamp, signature string, payload []byte) error {
	if v == nil {
		return errNilVerifier
	}
	if signature == "" {
		return v.verify(id, timestamp, nil, payload)
	}
	return v.verify(id, timestamp, []string{signature}, payload)
}

// Bounds of a signature header. It is read before anything is
// authenticated, so a forged one must cost little to refuse: a header beyond
// them is refused as invalid before any signature is checked.
const (
	// maxSignatures is the most signature entries a header may carry, all
	// its fields together: a sender signs once per secret, two or three
	// while it rotates.
	maxSignatures = 10
	// maxSignatureBytes is the most bytes a signature header may have, all
	// its fields together (ten v1a entries take 929).
	maxSignatureBytes = 2048
)

// signatures are the entries of a signature header.
type signatures struct {
	n int
	e [maxSignatures]string
}

// malformed returns the position (from 1) of the first v1 or v1a entry
// whose signature is not base64, or 0. It is asked only when no entry
// matched, so that a valid header is scanned once.
func (s *signatures) malformed() int {
	for i, entry := range s.e[:s.n] {
		if !wellFormed(entry) {
			return i + 1
		}
	}
	return 0
}

// parse splits the fields of a webhook-signature header into their
// space-separated entries, refusing a header beyond the bounds. Entries of
// other schemes, and entries without one, are kept and ignored, as the
// reference implementations ignore them; a v1 or v1a entry whose signature is
// not base64 ("v1,t=1") is noted, and makes the header invalid unless another
// entry matches.
func (s *signatures) parse(fields []string) error {
	size := 0
	for _, f := range fields {
		size += len(f)
		if size > maxSignatureBytes {
			return fmt.Errorf("%w: webhook-signature is longer than %d bytes", ErrInvalidHeader, maxSignatureBytes)
		}
	}
	for _, f := range fields {
		for entry := range entries(f) {
			if s.n == maxSignatures {
				return fmt.Errorf("%w: webhook-signature has more than %d signatures", ErrInvalidHeader, maxSignatures)
			}
			s.e[s.n] = entry
			s.n++
		}
	}
	return nil
}

func (v *Verifier) verify(id, timestamp string, fields []string, payload []byte) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: webhook-id", ErrMissingHeader)
	case timestamp == "":
		return fmt.Errorf("%w: webhook-timestamp", ErrMissingHeader)
	case len(fields) == 0:
		return fmt.Errorf("%w: webhook-signature", ErrMissingHeader)
	}
	if i := badIDByte(id); i >= 0 {
		return fmt.Errorf("%w: webhook-id has a byte 0x%02x at %d that is not visible ASCII", ErrInvalidHeader, id[i], i)
	}
	var sigs signatures
	if err := sigs.parse(fields); err != nil {
		return err
	}
	if _, err := v.cfg.checkTimestamp(timestamp); err != nil {
		return err
	}
	// The signed content uses the timestamp exactly as sent.
	if len(v.hmacs) > 0 && v.matchHMAC(id, timestamp, &sigs, payload) {
		return nil
	}
	if len(v.pubs) > 0 && v.matchEd25519(id, timestamp, &sigs, payload) {
		return nil
	}
	if i := sigs.malformed(); i > 0 {
		return fmt.Errorf("%w: webhook-signature entry %d is not base64", ErrInvalidHeader, i)
	}
	return ErrNoMatchingSignature
}

// matchHMAC computes the v1 signature with each secret and compares it, in
// constant time, with every v1 entry.
func (v *Verifier) matchHMAC(id, timestamp string, sigs *signatures, payload []byte) bool {
	var cand, src [64]byte
	for _, k := range v.hmacs {
		st := k.get()
		st.buf = signedPrefix(st.buf[:0], id, timestamp)
		st.mac.Write(st.buf)
		st.mac.Write(payload)
		sum := st.mac.Sum(st.buf[:0])
		ok := false
		for _, entry := range sigs.e[:sigs.n] {
			sig, found := strings.CutPrefix(entry, "v1,")
			if !found || len(sig) > len(src) {
				continue
			}
			// Decoding from a stack copy keeps the string-to-bytes
			// conversion from allocating.
			n, err := base64.StdEncoding.Decode(cand[:], src[:copy(src[:], sig)])
			if err != nil {
				continue
			}
			if v.onCheck != nil {
				v.onCheck()
			}
			if hmac.Equal(cand[:n], sum) {
				ok = true
			}
		}
		st.buf = sum[:0]
		k.put(st)
		if ok {
			return true
		}
	}
	return false
}

// matchEd25519 verifies every v1a entry with each public key.
func (v *Verifier) matchEd25519(id, timestamp string, sigs *signatures, payload []byte) bool {
	var msg []byte
	var cand [ed25519.SignatureSize + 3]byte
	var src [4 * (ed25519.SignatureSize + 3) / 3]byte
	for _, entry := range sigs.e[:sigs.n] {
		sig, found := strings.CutPrefix(entry, "v1a,")
		if !found || len(sig) > len(src) {
			continue
		}
		n, err := base64.StdEncoding.Decode(cand[:], src[:copy(src[:], sig)])
		if err != nil || n != ed25519.SignatureSize {
			continue
		}
		if msg == nil {
			msg = signedContent(id, timestamp, payload)
		}
		for _, k := range v.pubs {
			if v.onCheck != nil {
				v.onCheck()
			}
			if ed25519.Verify(k, msg, cand[:n]) {
				return true
			}
		}
	}
	return false
}

// wellFormed reports whether entry is not a v1 or v1a entry, or is one
// whose signature is standard, padded base64 (possibly of the wrong length,
// which is a signature that does not match rather than a malformed one).
func wellFormed(entry string) bool {
	sig, ok := strings.CutPrefix(entry, "v1,")
	if !ok {
		if sig, ok = strings.CutPrefix(entry, "v1a,"); !ok {
			return true
		}
	}
	if len(sig)%4 != 0 {
		return false
	}
	for i := 0; i < len(sig); i++ {
		switch c := sig[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
		case c == '=' && i >= len(sig)-2 && (i == len(sig)-1 || sig[len(sig)-1] == '='):
		default:
			return false
		}
	}
	return true
}

// entries yields the non-empty space-separated entries of a signature
// header.
func entries(h string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		for h != "" {
			var e string
			e, h, _ = strings.Cut(h, " ")
			if e != "" && !yield(e) {
				return
			}
		}
	}
}

// headerValues returns the values of the canonical key, falling back to a
// case-insensitive lookup for headers built by hand.
// singleValue returns the value of a header that must appear at most once
// (webhook-id, webhook-timestamp, stripe-signature): two values could be
// read one way here and another way by a proxy or the handler, so they are
// an invalid header. An absent header gives "".
func singleValue(h http.Header, key string) (string, error) {
	switch v := headerValues(h, key); len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", fmt.Errorf("%w: more than one %s header", ErrInvalidHeader, strings.ToLower(key))
}

func headerValues(h http.Header, key string) []string {
	if v := h[key]; len(v) > 0 {
		return v
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}
