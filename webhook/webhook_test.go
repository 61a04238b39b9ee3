package webhook_test

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The published Standard Webhooks test vector (the reference libraries'
// sign test).
const (
	vecSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTimestamp = 1614265330
	vecPayload   = `{"test": 2432232314}`
	vecSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func fixedClock(unix int64) webhook.Option {
	return webhook.WithClock(func() time.Time { return time.Unix(unix, 0) })
}

func mustVerifier(t testing.TB, secrets []string, opts ...webhook.Option) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(secrets, opts...)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func mustSigner(t testing.TB, secrets ...string) *webhook.Signer {
	t.Helper()
	s, err := webhook.NewSigner(secrets...)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func TestSignReproducesPublishedVector(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{vecSecret, strings.TrimPrefix(vecSecret, "whsec_")} {
		s := mustSigner(t, secret)
		got := mustSign(t, s, vecID, time.Unix(vecTimestamp, 0), []byte(vecPayload))
		if got != vecSignature {
			t.Errorf("Sign with secret %q = %q, want %q", secret, got, vecSignature)
		}
		h := http.Header{}
		mustSetHeaders(t, s, h, vecID, time.Unix(vecTimestamp, 0), []byte(vecPayload))
		if h.Get("webhook-id") != vecID || h.Get("webhook-timestamp") != strconv.Itoa(vecTimestamp) || h.Get("webhook-signature") != vecSignature {
			t.Errorf("SetHeaders = %v", h)
		}
	}
}

func TestVerifyAcceptsPublishedVector(t *testing.T) {
	t.Parallel()
	for _, secret := range []string{vecSecret, strings.TrimPrefix(vecSecret, "whsec_")} {
		v := mustVerifier(t, []string{secret}, fixedClock(vecTimestamp))
		if err := v.VerifyValues(vecID, strconv.Itoa(vecTimestamp), vecSignature, []byte(vecPayload)); err != nil {
			t.Errorf("secret %q: VerifyValues(vector) = %v, want nil", secret, err)
		}
		h := http.Header{}
		h.Set("webhook-id", vecID)
		h.Set("webhook-timestamp", strconv.Itoa(vecTimestamp))
		h.Set("webhook-signature", vecSignature)
		if err := v.Verify(h, []byte(vecPayload)); err != nil {
			t.Errorf("secret %q: Verify(vector) = %v, want nil", secret, err)
		}
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(nil)
	whsk, whpk := mustKeyPair(t, priv)
	tests := []struct {
		name       string
		secret     string
		signerOK   bool
		verifierOK bool
	}{
		{"with whsec_ prefix", vecSecret, true, true},
		{"without prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true, true},
		{"unpadded base64", "whsec_" + strings.TrimRight(webhook.EncodeSecret([]byte("0123456789abcdefghijklmn0"))[6:], "="), true, true},
		{"empty", "", false, false},
		{"prefix only", "whsec_", false, false},
		{"not base64", "whsec_not*base64!", false, false},
		{"ed25519 private key", whsk, true, false},
		{"ed25519 public key", whpk, false, true},
		{"short public key", "whpk_AAAA", false, false},
		{"short private key", "whsk_AAAA", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := webhook.NewSigner(tt.secret)
			if (err == nil) != tt.signerOK {
				t.Errorf("NewSigner(%q) error = %v, want ok=%v", tt.secret, err, tt.signerOK)
			}
			if err != nil && !errors.Is(err, webhook.ErrInvalidSecret) {
				t.Errorf("NewSigner error %v does not match ErrInvalidSecret", err)
			}
			_, err = webhook.NewVerifier([]string{tt.secret})
			if (err == nil) != tt.verifierOK {
				t.Errorf("NewVerifier(%q) error = %v, want ok=%v", tt.secret, err, tt.verifierOK)
			}
			if err != nil && !errors.Is(err, webhook.ErrInvalidSecret) {
				t.Errorf("NewVerifier error %v does not match ErrInvalidSecret", err)
			}
		})
	}
	if _, err := webhook.NewSigner(); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewSigner() = %v, want ErrInvalidSecret", err)
	}
	if _, err := webhook.NewVerifier(nil); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewVerifier(nil) = %v, want ErrInvalidSecret", err)
	}
	if _, err := webhook.NewVerifier([]string{vecSecret}, webhook.WithTolerance(0)); err == nil || !strings.Contains(err.Error(), "WithTolerance") {
		t.Errorf("NewVerifier(WithTolerance(0)) = %v, want an error naming the option", err)
	}
	if _, err := webhook.NewVerifier([]string{vecSecret}, webhook.WithClock(nil)); err == nil || !strings.Contains(err.Error(), "WithClock") {
		t.Errorf("NewVerifier(WithClock(nil)) = %v, want an error naming the option", err)
	}
}

// TestOptionsAndNil checks the rules every steadfast package follows: an
// option is refused, with an error naming it and the constructor, when it is
// invalid, nil, or meant for another constructor; nil receivers and
// arguments give errors, never panics.
func TestOptionsAndNil(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"nil option", func() error { _, err := webhook.NewVerifier([]string{vecSecret}, nil); return err }(), "webhook: NewVerifier: option 0 is nil"},
		{"tolerance", func() error {
			_, err := webhook.NewStripeVerifier([]string{stripeSecretA}, webhook.WithTolerance(time.Millisecond))
			return err
		}(), "webhook: NewStripeVerifier: WithTolerance: 1ms must be at least 1s"},
		{"middleware option", func() error {
			_, err := webhook.NewVerifier([]string{vecSecret}, webhook.WithMaxBodyBytes(10))
			return err
		}(), "webhook: NewVerifier: WithMaxBodyBytes applies to NewMiddleware, not NewVerifier"},
		{"nil clock", func() error { _, err := webhook.NewVerifier([]string{vecSecret}, webhook.WithClock(nil)); return err }(), "webhook: NewVerifier: WithClock: a clock function is required, not nil"},
	} {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.name, tt.err, tt.want)
		}
	}

	var v *webhook.Verifier
	var sv *webhook.StripeVerifier
	var s *webhook.Signer
	for name, err := range map[string]error{
		"Verifier.Verify":             v.Verify(http.Header{}, nil),
		"Verifier.VerifyValues":       v.VerifyValues("a", "1", "v1,AAAA", nil),
		"StripeVerifier.Verify":       sv.Verify(http.Header{}, nil),
		"StripeVerifier.VerifyHeader": sv.VerifyHeader("t=1,v1=00", nil),
		"Signer.Sign":                 func() error { _, err := s.Sign("a", time.Now(), nil); return err }(),
		"Signer.SetHeaders":           s.SetHeaders(http.Header{}, "a", time.Now(), nil),
		"SetHeaders(nil header)":      mustSigner(t, vecSecret).SetHeaders(nil, "a", time.Now(), nil),
	} {
		if err == nil || !strings.Contains(err.Error(), "nil") {
			t.Errorf("%s on nil = %v, want an error saying nil", name, err)
		}
	}
	if _, _, err := webhook.EncodeKeyPair(nil); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("EncodeKeyPair(nil) = %v, want ErrInvalidSecret", err)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	signer := mustSigner(t, vecSecret)
	payload := []byte(`{"type":"invoice.paid","amount":4200}`)
	sigAt := func(ts int64) string { return mustSign(t, signer, vecID, time.Unix(ts, 0), payload) }
	valid := sigAt(now)
	changed := append([]byte(nil), payload...)
	changed[10] ^= 1
	tests := []struct {
		name    string
		id, ts  string
		sig     string
		payload []byte
		want    error
	}{
		{"valid", vecID, strconv.Itoa(now), valid, payload, nil},
		{"missing id", "", strconv.Itoa(now), valid, payload, webhook.ErrMissingHeader},
		{"missing timestamp", vecID, "", valid, payload, webhook.ErrMissingHeader},
		{"missing signature", vecID, strconv.Itoa(now), "", payload, webhook.ErrMissingHeader},
		{"timestamp not an integer", vecID, "17e8", valid, payload, webhook.ErrInvalidHeader},
		{"timestamp with fraction", vecID, strconv.Itoa(now) + ".5", valid, payload, webhook.ErrInvalidHeader},
		{"timestamp negative", vecID, "-" + strconv.Itoa(now), valid, payload, webhook.ErrInvalidHeader},
		{"timestamp with plus sign", vecID, "+" + strconv.Itoa(now), valid, payload, webhook.ErrInvalidHeader},
		{"timestamp overflowing", vecID, "99999999999999999999999", valid, payload, webhook.ErrInvalidHeader},
		{"301s in the past", vecID, strconv.Itoa(now - 301), sigAt(now - 301), payload, webhook.ErrTimestampOutOfRange},
		{"301s in the future", vecID, strconv.Itoa(now + 301), sigAt(now + 301), payload, webhook.ErrTimestampOutOfRange},
		{"300s in the past", vecID, strconv.Itoa(now - 300), sigAt(now - 300), payload, nil},
		{"300s in the future", vecID, strconv.Itoa(now + 300), sigAt(now + 300), payload, nil},
		{"junk entries and one valid", vecID, strconv.Itoa(now), "v2,abc  junk v1,!!!! v1a,xyz v1,AAAA " + valid + " v1", payload, nil},
		{"v1, alone", vecID, strconv.Itoa(now), "v1,", payload, webhook.ErrNoMatchingSignature},
		{"one payload byte changed", vecID, strconv.Itoa(now), valid, changed, webhook.ErrNoMatchingSignature},
		{"other id", "msg_other", strconv.Itoa(now), valid, payload, webhook.ErrNoMatchingSignature},
		{"timestamp of another signature", vecID, strconv.Itoa(now - 1), valid, payload, webhook.ErrNoMatchingSignature},
		{"signature without scheme", vecID, strconv.Itoa(now), strings.TrimPrefix(valid, "v1,"), payload, webhook.ErrNoMatchingSignature},
		{"signature under v1a", vecID, strconv.Itoa(now), "v1a," + strings.TrimPrefix(valid, "v1,"), payload, webhook.ErrNoMatchingSignature},
		{"truncated signature", vecID, strconv.Itoa(now), valid[:len(valid)-4], payload, webhook.ErrNoMatchingSignature},
	}
	v := mustVerifier(t, []string{vecSecret}, fixedClock(now))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.VerifyValues(tt.id, tt.ts, tt.sig, tt.payload)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifyValues = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyValues = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyHeaders(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	signer := mustSigner(t, vecSecret)
	payload := []byte("hello")
	v := mustVerifier(t, []string{vecSecret}, fixedClock(now))

	// Signatures split across two header fields still verify.
	h := http.Header{}
	mustSetHeaders(t, signer, h, "msg_1", time.Unix(now, 0), payload)
	good := h.Get("webhook-signature")
	h.Set("webhook-signature", "v1,AAAA")
	h.Add("webhook-signature", good)
	if err := v.Verify(h, payload); err != nil {
		t.Errorf("Verify with the signature in a second field = %v", err)
	}
	// A hand-built, non-canonical header map is read too.
	raw := http.Header{"webhook-id": {"msg_1"}, "webhook-timestamp": {strconv.Itoa(now)}, "webhook-signature": {good}}
	if err := v.Verify(raw, payload); err != nil {
		t.Errorf("Verify with lower-case keys = %v", err)
	}
	if err := v.Verify(http.Header{}, payload); !errors.Is(err, webhook.ErrMissingHeader) {
		t.Errorf("Verify(no headers) = %v, want ErrMissingHeader", err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	oldSecret := webhook.EncodeSecret([]byte("old secret, 24 bytes long"))
	newSecret := webhook.EncodeSecret([]byte("new secret, 24 bytes long"))
	signer := mustSigner(t, oldSecret, newSecret)
	sig := mustSign(t, signer, "msg_1", time.Unix(now, 0), []byte("x"))
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("Sign with two secrets gave %d signatures (%q), want 2", n, sig)
	}
	for _, secrets := range [][]string{{oldSecret}, {newSecret}, {newSecret, oldSecret}} {
		v := mustVerifier(t, secrets, fixedClock(now))
		if err := v.VerifyValues("msg_1", strconv.Itoa(now), sig, []byte("x")); err != nil {
			t.Errorf("verifier with %d secret(s): %v", len(secrets), err)
		}
	}
	other := mustVerifier(t, []string{webhook.EncodeSecret([]byte("some other secret........"))}, fixedClock(now))
	if err := other.VerifyValues("msg_1", strconv.Itoa(now), sig, []byte("x")); !errors.Is(err, webhook.ErrNoMatchingSignature) {
		t.Errorf("verifier with an unrelated secret = %v, want ErrNoMatchingSignature", err)
	}
}

func TestEd25519(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	whsk, whpk := mustKeyPair(t, priv)
	_, otherWhpk := mustKeyPair(t, otherPriv)
	payload := []byte(`{"a":1}`)
	signer := mustSigner(t, whsk, vecSecret)
	sig := mustSign(t, signer, "msg_1", time.Unix(now, 0), payload)
	v1a, _, _ := strings.Cut(strings.Fields(sig)[1], " ")
	if !strings.HasPrefix(v1a, "v1a,") {
		t.Fatalf("second signature %q is not v1a", v1a)
	}
	// The v1a signature is a plain ed25519 signature of "id.timestamp.body".
	raw, _ := decodeB64(strings.TrimPrefix(v1a, "v1a,"))
	if !ed25519.Verify(pub, []byte("msg_1."+strconv.Itoa(now)+"."+string(payload)), raw) {
		t.Fatalf("v1a signature does not verify with crypto/ed25519")
	}
	tests := []struct {
		name    string
		secrets []string
		sig     string
		payload []byte
		want    error
	}{
		{"public key", []string{whpk}, sig, payload, nil},
		{"v1a alone", []string{whpk}, v1a, payload, nil},
		{"other public key", []string{otherWhpk}, v1a, payload, webhook.ErrNoMatchingSignature},
		{"changed payload", []string{whpk}, v1a, []byte(`{"a":2}`), webhook.ErrNoMatchingSignature},
		{"mixed keys, either matches", []string{otherWhpk, vecSecret}, sig, payload, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, tt.secrets, fixedClock(now))
			err := v.VerifyValues("msg_1", strconv.Itoa(now), tt.sig, tt.payload)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("VerifyValues = %v, want %v", err, tt.want)
			}
		})
	}
}

func stripeSign(secret string, ts int64, payload []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10) + "."))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

const stripeSecretA, stripeSecretB = "whsec_stripe_test_secret_a", "whsec_stripe_test_secret_b"

func TestStripe(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	const secretA, secretB = stripeSecretA, stripeSecretB
	payload := []byte(`{"id":"evt_1","object":"event"}`)
	ts := strconv.Itoa(now)
	sigA, sigB := stripeSign(secretA, now, payload), stripeSign(secretB, now, payload)
	bad := strings.Repeat("0", 64)
	tests := []struct {
		name    string
		secrets []string
		header  string
		payload []byte
		want    error
	}{
		{"valid", []string{secretA}, "t=" + ts + ",v1=" + sigA, payload, nil},
		{"valid with spaces and v0", []string{secretA}, "t=" + ts + ", v1=" + sigA + ", v0=" + bad, payload, nil},
		{"extra bad v1 still passes", []string{secretA}, "t=" + ts + ",v1=" + bad + ",v1=" + sigA, payload, nil},
		{"only v0 fails", []string{secretA}, "t=" + ts + ",v0=" + sigA, payload, webhook.ErrNoMatchingSignature},
		{"two v1, first secret", []string{secretA}, "t=" + ts + ",v1=" + sigA + ",v1=" + sigB, payload, nil},
		{"two v1, second secret", []string{secretB}, "t=" + ts + ",v1=" + sigA + ",v1=" + sigB, payload, nil},
		{"wrong secret", []string{"whsec_other_stripe_secret"}, "t=" + ts + ",v1=" + sigA, payload, webhook.ErrNoMatchingSignature},
		{"changed payload", []string{secretA}, "t=" + ts + ",v1=" + sigA, []byte(`{"id":"evt_2","object":"event"}`), webhook.ErrNoMatchingSignature},
		{"missing header", []string{secretA}, "", payload, webhook.ErrMissingHeader},
		{"no timestamp", []string{secretA}, "v1=" + sigA, payload, webhook.ErrInvalidHeader},
		{"bad timestamp", []string{secretA}, "t=abc,v1=" + sigA, payload, webhook.ErrInvalidHeader},
		{"stale", []string{secretA}, "t=" + strconv.Itoa(now-301) + ",v1=" + stripeSign(secretA, now-301, payload), payload, webhook.ErrTimestampOutOfRange},
		{"300s old", []string{secretA}, "t=" + strconv.Itoa(now-300) + ",v1=" + stripeSign(secretA, now-300, payload), payload, nil},
		{"v1 not hex", []string{secretA}, "t=" + ts + ",v1=" + strings.Repeat("zz", 32), payload, webhook.ErrNoMatchingSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := webhook.NewStripeVerifier(tt.secrets, fixedClock(now))
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			if tt.header != "" {
				h.Set("Stripe-Signature", tt.header)
			}
			err = v.Verify(h, tt.payload)
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Verify(%q) = %v, want %v", tt.header, err, tt.want)
			}
		})
	}
	if _, err := webhook.NewStripeVerifier([]string{""}); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewStripeVerifier(empty secret) = %v, want ErrInvalidSecret", err)
	}
	if _, err := webhook.NewStripeVerifier(nil); !errors.Is(err, webhook.ErrInvalidSecret) {
		t.Errorf("NewStripeVerifier(nil) = %v, want ErrInvalidSecret", err)
	}
}

// TestSignRefusesIDs checks the ids a Signer refuses: what cannot be sent
// as a webhook-id header value.
func TestSignRefusesIDs(t *testing.T) {
	t.Parallel()
	s := mustSigner(t, vecSecret)
	for id, ok := range map[string]bool{
		"msg_p5jXN8AQM9LWM0D4loKWxJek":         true,
		"0190f5e2-7b4c-7000-8000-0000000000aa": true,
		"":                                     false,
		"has space":                            false,
		"new\nline":                            false,
		"non-ascii-é":                          false,
	} {
		_, err := s.Sign(id, time.Unix(vecTimestamp, 0), nil)
		if (err == nil) != ok {
			t.Errorf("Sign(%q) = %v, want ok=%v", id, err, ok)
		}
		h := http.Header{}
		err = s.SetHeaders(h, id, time.Unix(vecTimestamp, 0), nil)
		if (err == nil) != ok || (err != nil && len(h) != 0) {
			t.Errorf("SetHeaders(%q) = %v, headers %v; want ok=%v, headers untouched on error", id, err, h, ok)
		}
	}
	if _, err := s.Sign("msg_1", time.Unix(-1, 0), nil); err == nil {
		t.Errorf("Sign at a negative timestamp succeeded; no receiver accepts it")
	}
}

// TestShortHMACSecretsRefused: Standard Webhooks requires v1 secrets of at
// least 24 bytes (decoded); a shorter HMAC key is refused by the signer and
// both verifiers, with an error that says so (issue 12, item 12).
func TestShortHMACSecretsRefused(t *testing.T) {
	t.Parallel()
	hunter2 := webhook.EncodeSecret([]byte("hunter2"))
	short := webhook.EncodeSecret([]byte(strings.Repeat("k", 23)))
	enough := webhook.EncodeSecret([]byte(strings.Repeat("k", 24)))
	for _, secret := range []string{hunter2, short, strings.TrimPrefix(short, "whsec_")} {
		_, err := webhook.NewSigner(enough, secret)
		if !errors.Is(err, webhook.ErrInvalidSecret) || !strings.Contains(err.Error(), "secret 1 ") || !strings.Contains(err.Error(), "at least 24 bytes") {
			t.Errorf("NewSigner(%q) = %v, want ErrInvalidSecret saying at least 24 bytes", secret, err)
		}
		_, err = webhook.NewVerifier([]string{enough, secret})
		if !errors.Is(err, webhook.ErrInvalidSecret) || !strings.Contains(err.Error(), "secret 1 ") || !strings.Contains(err.Error(), "at least 24 bytes") {
			t.Errorf("NewVerifier(%q) = %v, want ErrInvalidSecret saying at least 24 bytes", secret, err)
		}
	}
	for _, secret := range []string{"hunter2", "whsec_" + strings.Repeat("k", 17)} {
		_, err := webhook.NewStripeVerifier([]string{stripeSecretA, secret})
		if !errors.Is(err, webhook.ErrInvalidSecret) || !strings.Contains(err.Error(), "secret 1 ") || !strings.Contains(err.Error(), "at least 24 bytes") {
			t.Errorf("NewStripeVerifier(%q) = %v, want ErrInvalidSecret saying at least 24 bytes", secret, err)
		}
	}
	if _, err := webhook.NewSigner(enough); err != nil {
		t.Errorf("NewSigner(24 bytes) = %v", err)
	}
	if _, err := webhook.NewVerifier([]string{enough}); err != nil {
		t.Errorf("NewVerifier(24 bytes) = %v", err)
	}
	if _, err := webhook.NewStripeVerifier([]string{"whsec_" + strings.Repeat("k", 18)}); err != nil {
		t.Errorf("NewStripeVerifier(24 bytes) = %v", err)
	}
}
