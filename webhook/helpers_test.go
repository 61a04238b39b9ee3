package webhook_test

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

func decodeB64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

// mustSign signs or fails the test. It is safe to call from other
// goroutines: it reports with Error, not Fatal.
func mustSign(t testing.TB, s *webhook.Signer, id string, ts time.Time, payload []byte) string {
	t.Helper()
	sig, err := s.Sign(id, ts, payload)
	if err != nil {
		t.Errorf("Sign(%q): %v", id, err)
	}
	return sig
}

// mustSetHeaders sets the webhook headers or fails the test, like mustSign.
func mustSetHeaders(t testing.TB, s *webhook.Signer, h http.Header, id string, ts time.Time, payload []byte) {
	t.Helper()
	if err := s.SetHeaders(h, id, ts, payload); err != nil {
		t.Errorf("SetHeaders(%q): %v", id, err)
	}
}

// mustKeyPair encodes an ed25519 key pair or fails the test.
func mustKeyPair(t testing.TB, k []byte) (private, public string) {
	t.Helper()
	private, public, err := webhook.EncodeKeyPair(k)
	if err != nil {
		t.Fatalf("EncodeKeyPair: %v", err)
	}
	return private, public
}
