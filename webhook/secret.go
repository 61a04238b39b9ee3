package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// Prefixes of the encoded keys of Standard Webhooks.
const (
	// secretPrefix starts a symmetric (v1, HMAC-SHA256) secret.
	secretPrefix = "whsec_"
	// privateKeyPrefix starts an ed25519 private key (v1a), used to sign.
	privateKeyPrefix = "whsk_"
	// publicKeyPrefix starts an ed25519 public key (v1a), used to verify.
	publicKeyPrefix = "whpk_"
)

// decodeBase64 accepts standard base64 with or without padding.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// hmacKey is a v1 secret with a pool of ready HMAC states, so that verifying
// allocates nothing in the steady state.
type hmacKey struct {
	pool sync.Pool // of *macState
}

type macState struct {
	mac hash.Hash
	buf []byte // scratch for "id.timestamp." and the sum
}

func newHMACKey(key []byte) *hmacKey {
	k := &hmacKey{}
	k.pool.New = func() any {
		return &macState{mac: hmac.New(sha256.New, key), buf: make([]byte, 0, 128)}
	}
	return k
}

func (k *hmacKey) get() *macState  { return k.pool.Get().(*macState) }
func (k *hmacKey) put(s *macState) { s.mac.Reset(); k.pool.Put(s) }

// minHMACKey is the shortest HMAC key accepted, in bytes: the Standard
// Webhooks minimum for v1 secrets (decoded), applied to Stripe-style secrets
// as well. A shorter key can be guessed offline from one signed message.
const minHMACKey = 24

// parseSymmetric decodes a v1 secret: "whsec_" (optional) followed by base64.
func parseSymmetric(i int, s string) (*hmacKey, error) {
	b64 := strings.TrimPrefix(s, secretPrefix)
	if b64 == "" {
		return nil, fmt.Errorf("%w: secret %d is empty", ErrInvalidSecret, i)
	}
	key, err := decodeBase64(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: secret %d is not base64 after the %q prefix: %v", ErrInvalidSecret, i, secretPrefix, err)
	}
	if len(key) < minHMACKey {
		return nil, fmt.Errorf("%w: secret %d decodes to %d bytes; Standard Webhooks requires at least %d bytes (24 to 64 random bytes)",
			ErrInvalidSecret, i, len(key), minHMACKey)
	}
	return newHMACKey(key), nil
}

func parsePrivateKey(i int, s string) (ed25519.PrivateKey, error) {
	raw, err := decodeBase64(strings.TrimPrefix(s, privateKeyPrefix))
	if err != nil {
		return nil, fmt.Errorf("%w: secret %d is not base64 after the %q prefix: %v", ErrInvalidSecret, i, privateKeyPrefix, err)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(raw), nil
	}
	return nil, fmt.Errorf("%w: secret %d is %d bytes, want an ed25519 seed (%d) or private key (%d)",
		ErrInvalidSecret, i, len(raw), ed25519.SeedSize, ed25519.PrivateKeySize)
}

func parsePublicKey(i int, s string) (ed25519.PublicKey, error) {
	raw, err := decodeBase64(strings.TrimPrefix(s, publicKeyPrefix))
	if err != nil {
		return nil, fmt.Errorf("%w: secret %d is not base64 after the %q prefix: %v", ErrInvalidSecret, i, publicKeyPrefix, err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: secret %d is %d bytes, want an ed25519 public key (%d)",
			ErrInvalidSecret, i, len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// EncodeKeyPair returns the ed25519 key k in the two forms of Standard
// Webhooks' v1a scheme: private ("whsk_…", for NewSigner) and public
// ("whpk_…", for NewVerifier at the receivers). Make k with
// ed25519.GenerateKey. It returns an error matching ErrInvalidSecret when k
// is not an ed25519 private key (ed25519.PrivateKeySize bytes).
func EncodeKeyPair(k ed25519.PrivateKey) (private, public string, err error) {
	if len(k) != ed25519.PrivateKeySize {
		return "", "", fmt.Errorf("%w: the key is %d bytes, want an ed25519 private key (%d)", ErrInvalidSecret, len(k), ed25519.PrivateKeySize)
	}
	// The public half is derived from the seed, not copied from k.
	seed := k.Seed()
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	return privateKeyPrefix + base64.StdEncoding.EncodeToString(seed),
		publicKeyPrefix + base64.StdEncoding.EncodeToString(pub), nil
}

// EncodeSecret returns key in the "whsec_" form of Standard Webhooks' v1
// (HMAC-SHA256) scheme, which NewSigner and NewVerifier accept. The key must
// be 24 to 64 random bytes (crypto/rand.Read), as Standard Webhooks requires:
// the constructors refuse a shorter one.
func EncodeSecret(key []byte) string {
	return secretPrefix + base64.StdEncoding.EncodeToString(key)
}
