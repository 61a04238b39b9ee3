package webhook_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

// BenchmarkVerify2KiB compares verifying a 2 KiB webhook with the bare
// HMAC-SHA256 of the same bytes (hmac.New + Write + Sum), the floor any
// verifier pays.
func BenchmarkVerify2KiB(b *testing.B) {
	const now = 1_700_000_000
	payload := bytes.Repeat([]byte("a"), 2048)
	key, _ := base64.StdEncoding.DecodeString(vecSecret[len("whsec_"):])
	signer, _ := webhook.NewSigner(vecSecret)
	v, _ := webhook.NewVerifier([]string{vecSecret}, fixedClock(now))
	h := http.Header{}
	signer.SetHeaders(h, vecID, time.Unix(now, 0), payload)
	content := []byte(vecID + "." + strconv.Itoa(now) + "." + string(payload))

	b.Run("baseline=bare-hmac", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			m := hmac.New(sha256.New, key)
			m.Write(content)
			_ = m.Sum(nil)
		}
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			if err := v.Verify(h, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
