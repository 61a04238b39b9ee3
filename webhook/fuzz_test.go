package webhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

// FuzzVerify feeds arbitrary header values to the Standard Webhooks
// verifier: it must never panic, must classify every failure with one of the
// sentinels, and must accept only what the signer produced.
func FuzzVerify(f *testing.F) {
	const now = 1_700_000_000
	signer, err := webhook.NewSigner(vecSecret)
	if err != nil {
		f.Fatal(err)
	}
	v, err := webhook.NewVerifier([]string{vecSecret}, fixedClock(now))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("msg_1", strconv.Itoa(now), mustSign(f, signer, "msg_1", time.Unix(now, 0), []byte("x")), []byte("x"))
	f.Add(vecID, strconv.Itoa(vecTimestamp), vecSignature, []byte(vecPayload))
	f.Add("id", "-1", "v1,", []byte{})
	f.Add("id", "1700000000", "v1a,AAAA v1,==== v2 ,,, v1,"+string(make([]byte, 100)), []byte("y"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, payload []byte) {
		err := v.VerifyValues(id, ts, sig, payload)
		if err == nil {
			unix, perr := strconv.ParseInt(ts, 10, 64)
			if perr != nil {
				t.Fatalf("accepted timestamp %q that is not an integer", ts)
			}
			want, serr := signer.Sign(id, time.Unix(unix, 0), payload)
			if serr != nil {
				t.Fatalf("accepted id %q that the signer refuses: %v", id, serr)
			}
			if strconv.FormatInt(unix, 10) == ts && !containsEntry(sig, want) {
				t.Fatalf("accepted %q for id %q ts %q, but the signature is %q", sig, id, ts, want)
			}
			return
		}
		for _, s := range []error{webhook.ErrMissingHeader, webhook.ErrInvalidHeader, webhook.ErrTimestampOutOfRange, webhook.ErrNoMatchingSignature} {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error %v matches no sentinel", err)
	})
}

func containsEntry(header, entry string) bool {
	for i := 0; i+len(entry) <= len(header); i++ {
		if header[i:i+len(entry)] == entry {
			return true
		}
	}
	return false
}

// FuzzStripe feeds arbitrary Stripe-Signature headers to the verifier.
func FuzzStripe(f *testing.F) {
	const now = 1_700_000_000
	v, err := webhook.NewStripeVerifier([]string{stripeSecretA}, fixedClock(now))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("t="+strconv.Itoa(now)+",v1="+stripeSign(stripeSecretA, now, []byte("p")), []byte("p"))
	f.Add("t=,v1=,v0=,=,,", []byte{})
	f.Add("t=1700000000,v1=zz", []byte("p"))
	f.Fuzz(func(t *testing.T, header string, payload []byte) {
		h := http.Header{}
		h.Set("Stripe-Signature", header)
		err := v.Verify(h, payload)
		if err != nil {
			for _, s := range []error{webhook.ErrMissingHeader, webhook.ErrInvalidHeader, webhook.ErrTimestampOutOfRange, webhook.ErrNoMatchingSignature} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v matches no sentinel", err)
		}
	})
}
