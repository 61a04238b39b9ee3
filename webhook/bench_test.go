package webhook_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/internal/benchcpu"
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
	mustSetHeaders(b, signer, h, vecID, time.Unix(now, 0), payload)
	content := []byte(vecID + "." + strconv.Itoa(now) + "." + string(payload))

	b.Run("baseline=bare-hmac", func(b *testing.B) {
		benchcpu.Report(b, func() {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				m := hmac.New(sha256.New, key)
				m.Write(content)
				_ = m.Sum(nil)
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		benchcpu.Report(b, func() {
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if err := v.Verify(h, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkMiddleware2KiB compares a request through the verification
// middleware with the same request to the bare handler, which reads the body
// itself.
func BenchmarkMiddleware2KiB(b *testing.B) {
	const now = 1_700_000_000
	payload := bytes.Repeat([]byte("a"), 2048)
	signer, _ := webhook.NewSigner(vecSecret)
	v, _ := webhook.NewVerifier([]string{vecSecret}, fixedClock(now))
	mw, err := webhook.NewMiddleware(v)
	if err != nil {
		b.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	h := http.Header{}
	mustSetHeaders(b, signer, h, vecID, time.Unix(now, 0), payload)
	run := func(b *testing.B, next http.Handler) {
		benchcpu.Report(b, func() {
			b.SetBytes(int64(len(payload)))
			w := &discardWriter{h: http.Header{}}
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(payload))
				r.Header = h
				next.ServeHTTP(w, r)
				if w.code != http.StatusNoContent {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
	b.Run("baseline=bare-handler", func(b *testing.B) { run(b, handler) })
	b.Run("middleware", func(b *testing.B) { run(b, mw(handler)) })
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
