package webhook_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

// TestForgedSignatureFloodRefusedAtOnce: a header of 5,000 forged entries,
// or one of a megabyte, is refused as invalid before any signature is
// checked, for v1, v1a and Stripe alike (issue 12, item 11). The work is
// measured by counting signature checks, not by timing.
func TestForgedSignatureFloodRefusedAtOnce(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	_, priv, _ := ed25519.GenerateKey(nil)
	_, whpk := mustKeyPair(t, priv)
	payload := []byte(`{"type":"invoice.paid"}`)
	v1a := "v1a," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, ed25519.SignatureSize))
	v1 := "v1," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	flood := func(entry string, n int) string { return strings.TrimSpace(strings.Repeat(entry+" ", n)) }

	tests := []struct {
		name string
		sig  string
	}{
		{"5,000 forged v1a entries", flood(v1a, 5000)},
		{"5,000 forged v1 entries", flood(v1, 5000)},
		{"5,000 forged entries of both", flood(v1+" "+v1a, 2500)},
		{"one entry of a megabyte", "v1," + strings.Repeat("A", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, []string{whpk, vecSecret}, fixedClock(now))
			var checks atomic.Int64
			webhook.OnSignatureCheck(v, func() { checks.Add(1) })
			err := v.VerifyValues("msg_1", strconv.Itoa(now), tt.sig, payload)
			if !errors.Is(err, webhook.ErrInvalidHeader) {
				t.Errorf("VerifyValues = %v, want ErrInvalidHeader", err)
			}
			if n := checks.Load(); n != 0 {
				t.Errorf("%d signatures checked before refusing, want 0", n)
			}

			// Through the middleware: 401 at once, the handler never runs.
			mw, err := webhook.NewMiddleware(v)
			if err != nil {
				t.Fatal(err)
			}
			called := false
			r := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(payload))
			r.Header.Set("webhook-id", "msg_1")
			r.Header.Set("webhook-timestamp", strconv.Itoa(now))
			r.Header.Set("webhook-signature", tt.sig)
			rec := httptest.NewRecorder()
			mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).ServeHTTP(rec, r)
			if rec.Code != http.StatusUnauthorized || called {
				t.Errorf("middleware answered %d (handler called: %v), want 401", rec.Code, called)
			}
			if n := checks.Load(); n != 0 {
				t.Errorf("%d signatures checked by the middleware before refusing, want 0", n)
			}
		})
	}

	t.Run("Stripe", func(t *testing.T) {
		t.Parallel()
		sv, err := webhook.NewStripeVerifier([]string{stripeSecretA}, fixedClock(now))
		if err != nil {
			t.Fatal(err)
		}
		var checks atomic.Int64
		webhook.OnSignatureCheck(sv, func() { checks.Add(1) })
		header := "t=" + strconv.Itoa(now) + strings.Repeat(",v1="+strings.Repeat("0", 64), 5000)
		if err := sv.VerifyHeader(header, payload); !errors.Is(err, webhook.ErrInvalidHeader) {
			t.Errorf("VerifyHeader(5,000 entries) = %v, want ErrInvalidHeader", err)
		}
		if n := checks.Load(); n != 0 {
			t.Errorf("%d signatures checked before refusing, want 0", n)
		}
	})
}

// TestSignatureCapKeepsRotation: the cap leaves room for what senders
// really send: the valid signature as the last of ten entries (a sender
// rotating several v1 and v1a keys) is found, at a bounded cost.
func TestSignatureCapKeepsRotation(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	_, priv, _ := ed25519.GenerateKey(nil)
	whsk, whpk := mustKeyPair(t, priv)
	payload := []byte("x")
	signer := mustSigner(t, vecSecret, whsk)
	sig := mustSign(t, signer, "msg_1", time.Unix(now, 0), payload)
	forgedV1 := "v1," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	forgedV1a := "v1a," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, ed25519.SignatureSize))
	header := strings.Repeat(forgedV1+" ", 4) + strings.Repeat(forgedV1a+" ", 4) + sig // 10 entries
	if n := len(strings.Fields(header)); n != 10 {
		t.Fatalf("header has %d entries, want 10", n)
	}
	for _, secrets := range [][]string{{vecSecret}, {whpk}} {
		v := mustVerifier(t, secrets, fixedClock(now))
		var checks atomic.Int64
		webhook.OnSignatureCheck(v, func() { checks.Add(1) })
		if err := v.VerifyValues("msg_1", strconv.Itoa(now), header, payload); err != nil {
			t.Errorf("verifier with %v: %v, want the last entry to match", secrets[0][:5], err)
		}
		if n := checks.Load(); n > 10 {
			t.Errorf("%d signatures checked for 10 entries and one key", n)
		}
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.Itoa(now))
	h.Set("webhook-signature", header)
	h.Add("webhook-signature", forgedV1) // an 11th entry, in a second field
	v := mustVerifier(t, []string{vecSecret}, fixedClock(now))
	if err := v.Verify(h, payload); !errors.Is(err, webhook.ErrInvalidHeader) {
		t.Errorf("Verify(11 entries over two fields) = %v, want ErrInvalidHeader", err)
	}
}

// hmacV1 signs id.timestamp.payload as Standard Webhooks v1 does, for ids
// that the Signer refuses to sign.
func hmacV1(t *testing.T, secret, id string, ts int64, payload []byte) string {
	t.Helper()
	key, err := decodeB64(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	m.Write(payload)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// TestMalformedHeadersInvalid: headers are parsed strictly, so a malformed
// one is refused as ErrInvalidHeader, not by a later check or, worse,
// accepted in one of its readings (issue 12, item 14).
func TestMalformedHeadersInvalid(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	ts := strconv.Itoa(now)
	payload := []byte(`{"id":"evt_1"}`)
	signer := mustSigner(t, vecSecret)
	valid := mustSign(t, signer, "msg_1", time.Unix(now, 0), payload)
	v := mustVerifier(t, []string{vecSecret}, fixedClock(now))
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	for _, tt := range []struct {
		name string
		h    http.Header
	}{
		{"v1,t=1", header("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "v1,t=1")},
		{"v1a,t=1", header("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "v1a,t=1")},
		{"v1 signature not base64", header("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-signature", "v1,"+strings.Repeat("*", 44))},
		{"id with a space, signed", header("webhook-id", "msg 1", "webhook-timestamp", ts, "webhook-signature", hmacV1(t, vecSecret, "msg 1", now, payload))},
		{"id with a control byte, signed", header("webhook-id", "msg\x011", "webhook-timestamp", ts, "webhook-signature", hmacV1(t, vecSecret, "msg\x011", now, payload))},
		{"two ids", header("webhook-id", "msg_1", "webhook-id", "msg_2", "webhook-timestamp", ts, "webhook-signature", valid)},
		{"two timestamps", header("webhook-id", "msg_1", "webhook-timestamp", ts, "webhook-timestamp", strconv.Itoa(now+1), "webhook-signature", valid)},
	} {
		if err := v.Verify(tt.h, payload); !errors.Is(err, webhook.ErrInvalidHeader) {
			t.Errorf("%s: Verify = %v, want ErrInvalidHeader", tt.name, err)
		}
	}

	sv, err := webhook.NewStripeVerifier([]string{stripeSecretA}, fixedClock(now))
	if err != nil {
		t.Fatal(err)
	}
	sig := stripeSign(stripeSecretA, now, payload)
	for _, h := range []string{
		"v1,t=1",
		"v1,t=" + ts,
		"t=" + ts + ",v1",
		"t=" + ts + ",v1=" + sig + ",t=" + ts,
		"t=" + ts + ",t=" + strconv.Itoa(now+1) + ",v1=" + sig,
		"t=" + ts + ",,v1=" + sig,
		"t=" + ts + ",v1=" + sig + ",",
		"=x,t=" + ts + ",v1=" + sig,
		"t=" + ts + ",v1=",
		"t = " + ts + ",v1=" + sig,
		"T=" + ts + ",v1=" + sig,
	} {
		if err := sv.VerifyHeader(h, payload); !errors.Is(err, webhook.ErrInvalidHeader) {
			t.Errorf("VerifyHeader(%q) = %v, want ErrInvalidHeader", h, err)
		}
	}
	// What Stripe sends still verifies: spaces after commas, v0 entries.
	if err := sv.VerifyHeader("t="+ts+", v1="+sig+", v0="+strings.Repeat("0", 64), payload); err != nil {
		t.Errorf("a well-formed header: %v", err)
	}
}
