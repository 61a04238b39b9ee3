package webhook

// Test hooks.

// OnSignatureCheck makes v call f once per signature it checks (a v1 or
// Stripe comparison, a v1a verification with one key). Call it before v is
// used.
func OnSignatureCheck(v any, f func()) {
	switch v := v.(type) {
	case *Verifier:
		v.onCheck = f
	case *StripeVerifier:
		v.onCheck = f
	default:
		panic("OnSignatureCheck: not a verifier")
	}
}
