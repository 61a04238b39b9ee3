package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Signer signs messages per Standard Webhooks. It is immutable and safe for
// concurrent use.
type Signer struct {
	hmacs []*hmacKey
	privs []ed25519.PrivateKey
}

// NewSigner returns a Signer that signs with every secret given, in order:
// a "whsec_…" secret (the prefix is optional) signs with v1 (HMAC-SHA256), a
// "whsk_…" key with v1a (ed25519). Give two secrets while rotating, so that
// receivers holding either one accept the message. A Signer has nothing
// else to configure (the time is Sign's argument), so NewSigner takes no
// options.
//
// It returns an error matching ErrInvalidSecret when no secret is given or
// one of them is malformed, or a v1 secret decodes to fewer than 24 bytes
// (the Standard Webhooks minimum).
func NewSigner(secrets ...string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: no secret given", ErrInvalidSecret)
	}
	s := &Signer{}
	for i, sec := range secrets {
		if strings.HasPrefix(sec, privateKeyPrefix) {
			k, err := parsePrivateKey(i, sec)
			if err != nil {
				return nil, err
			}
			s.privs = append(s.privs, k)
			continue
		}
		if strings.HasPrefix(sec, publicKeyPrefix) {
			return nil, fmt.Errorf("%w: secret %d is a public key (%q), which can only verify", ErrInvalidSecret, i, publicKeyPrefix)
		}
		k, err := parseSymmetric(i, sec)
		if err != nil {
			return nil, err
		}
		s.hmacs = append(s.hmacs, k)
	}
	return s, nil
}

// Sign returns the value of the webhook-signature header for the message id,
// signed at ts, with body payload: one "v1,…" or "v1a,…" entry per secret,
// separated by spaces. The timestamp is truncated to whole seconds.
//
// It returns an error when id cannot be sent as a webhook-id header (it must
// be non-empty visible ASCII), when ts is before 1970 (receivers refuse
// negative timestamps), and for a nil Signer. A caller can treat the error as
// permanent: signing the same message again fails again.
func (s *Signer) Sign(id string, ts time.Time, payload []byte) (string, error) {
	if s == nil {
		return "", errNilSigner
	}
	if err := validateID(id); err != nil {
		return "", err
	}
	if ts.Unix() < 0 {
		return "", fmt.Errorf("webhook: timestamp %v is before 1970", ts)
	}
	var tsb [20]byte
	unix := string(strconv.AppendInt(tsb[:0], ts.Unix(), 10)) // signed as sent
	var b strings.Builder
	for _, k := range s.hmacs {
		st := k.get()
		st.buf = signedPrefix(st.buf[:0], id, unix)
		st.mac.Write(st.buf)
		st.mac.Write(payload)
		sum := st.mac.Sum(st.buf[:0])
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(sum))
		st.buf = sum[:0]
		k.put(st)
	}
	if len(s.privs) > 0 {
		msg := signedContent(id, unix, payload)
		for _, k := range s.privs {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString("v1a,")
			b.WriteString(base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg)))
		}
	}
	return b.String(), nil
}

// SetHeaders sets the three Standard Webhooks headers of h (webhook-id,
// webhook-timestamp, webhook-signature) for the message id, signed at ts,
// with body payload. It replaces earlier values. It returns Sign's errors,
// and an error for a nil h; on error h is unchanged.
func (s *Signer) SetHeaders(h http.Header, id string, ts time.Time, payload []byte) error {
	if h == nil {
		return errors.New("webhook: SetHeaders needs a header map, not nil")
	}
	sig, err := s.Sign(id, ts, payload)
	if err != nil {
		return err
	}
	h[headerID] = []string{id}
	h[headerTimestamp] = []string{strconv.FormatInt(ts.Unix(), 10)}
	h[headerSignature] = []string{sig}
	return nil
}

var errNilSigner = errors.New("webhook: Sign called on a nil signer")

// validateID reports whether id can be sent as a webhook-id: non-empty and
// made of visible ASCII, so that it survives as an HTTP header value.
func validateID(id string) error {
	if id == "" {
		return errors.New("webhook: empty message id")
	}
	if i := badIDByte(id); i >= 0 {
		return fmt.Errorf("webhook: message id has a byte 0x%02x at %d that is not visible ASCII", id[i], i)
	}
	return nil
}

// badIDByte returns the position of the first byte of id that is not
// visible ASCII, or -1.
func badIDByte(id string) int {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return i
		}
	}
	return -1
}

// signedPrefix appends "id.timestamp." to dst.
func signedPrefix(dst []byte, id, timestamp string) []byte {
	dst = append(dst, id...)
	dst = append(dst, '.')
	dst = append(dst, timestamp...)
	return append(dst, '.')
}

// signedContent returns "id.timestamp.payload" in one slice, as ed25519
// needs.
func signedContent(id, timestamp string, payload []byte) []byte {
	msg := make([]byte, 0, len(id)+len(timestamp)+2+len(payload))
	msg = signedPrefix(msg, id, timestamp)
	return append(msg, payload...)
}
