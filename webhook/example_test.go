package webhook_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

func ExampleSigner_Sign() {
	signer, err := webhook.NewSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	sig, err := signer.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(sig)
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

func ExampleNewMiddleware() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	verifier, err := webhook.NewVerifier([]string{secret})
	if err != nil {
		panic(err)
	}
	verify, err := webhook.NewMiddleware(verifier)
	if err != nil {
		panic(err)
	}
	handler := verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // the raw body, intact
		fmt.Printf("handled %s: %s\n", r.Header.Get("webhook-id"), body)
	}))

	// A signed delivery reaches the handler.
	body := `{"type":"invoice.paid"}`
	req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(body))
	signer, err := webhook.NewSigner(secret)
	if err != nil {
		panic(err)
	}
	if err := signer.SetHeaders(req.Header, "msg_1", time.Now(), []byte(body)); err != nil {
		panic(err)
	}
	handler.ServeHTTP(httptest.NewRecorder(), req)

	// A forged one does not.
	req = httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(body))
	req.Header.Set("webhook-id", "msg_2")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	// Output:
	// handled msg_1: {"type":"invoice.paid"}
	// 401 application/problem+json
}

// A sender that signs with ed25519 (v1a) keeps the private key and hands the
// public one to its receivers.
func ExampleEncodeKeyPair() {
	// In production: _, key, err := ed25519.GenerateKey(nil)
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	private, public, err := webhook.EncodeKeyPair(key)
	if err != nil {
		panic(err)
	}
	signer, err := webhook.NewSigner(private)
	if err != nil {
		panic(err)
	}
	verifier, err := webhook.NewVerifier([]string{public})
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	body := []byte(`{"type":"ping"}`)
	if err := signer.SetHeaders(h, "msg_1", time.Now(), body); err != nil {
		panic(err)
	}
	fmt.Println(public)
	fmt.Println(verifier.Verify(h, body))
	// Output:
	// whpk_6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=
	// <nil>
}

// A receiver that verifies a delivery it stored earlier checks the signed
// timestamp against the time the delivery was received, not against now.
func ExampleVerifier_VerifyValues() {
	received := time.Unix(1614265330, 0)
	verifier, err := webhook.NewVerifier([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		webhook.WithClock(func() time.Time { return received }))
	if err != nil {
		panic(err)
	}
	err = verifier.VerifyValues("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	fmt.Println(err)

	// Forged, or changed since it was signed:
	err = verifier.VerifyValues("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 1}`))
	fmt.Println(errors.Is(err, webhook.ErrNoMatchingSignature))
	// Output:
	// <nil>
	// true
}

func ExampleStripeVerifier_Verify() {
	const secret = "whsec_0123456789abcdefghijklmnopqrstuv" // from the provider's dashboard
	verifier, err := webhook.NewStripeVerifier([]string{secret})
	if err != nil {
		panic(err)
	}
	verify, err := webhook.NewMiddleware(verifier)
	if err != nil {
		panic(err)
	}
	handler := verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Printf("handled %s\n", body)
	}))

	// What the provider sends: HMAC-SHA256 of "t.body", keyed with the
	// whole secret string.
	body := `{"id":"evt_1"}`
	t := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "." + body))
	req := httptest.NewRequest(http.MethodPost, "/stripe", strings.NewReader(body))
	req.Header.Set("Stripe-Signature", "t="+t+",v1="+hex.EncodeToString(mac.Sum(nil)))
	handler.ServeHTTP(httptest.NewRecorder(), req)

	// A forged delivery is refused.
	req = httptest.NewRequest(http.MethodPost, "/stripe", strings.NewReader(body))
	req.Header.Set("Stripe-Signature", "t="+t+",v1="+strings.Repeat("0", 64))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// handled {"id":"evt_1"}
	// 401
}
