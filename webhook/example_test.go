package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

func ExampleSigner_Sign() {
	signer, err := webhook.NewSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	sig := signer.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
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
	signer, _ := webhook.NewSigner(secret)
	signer.SetHeaders(req.Header, "msg_1", time.Now(), []byte(body))
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
