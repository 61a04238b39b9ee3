// Package storetest is a conformance suite for implementations of
// idempotency.Store, in the manner of testing/slogtest: a backend's own test
// calls Run with a function that builds a fresh harness, and every case of
// the suite runs as a subtest.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Harness {
//			s, err := mystore.New(db)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return storetest.Harness{Store: s}
//		})
//	}
//
// The suite checks what callers of a Store rely on: one winner among 100
// concurrent claimers, lease renewal, takeover of an expired lease and the
// rejection of the old holder's late Renew, Complete and Release, retention,
// the first fingerprint kept and a mismatch never taken over, responses
// stored byte for byte (1 MiB and empty), keys compared byte for byte (up to
// 700 bytes, non-ASCII too; the middleware's scoped keys can be that long),
// Release, a cancelled context honoured, and the limits every store holds to
// (keys of 1 to 1024 bytes, fingerprints of at most 255, positive leases and
// retentions, and the store's own bound on responses, Harness.MaxResponseBytes).
//
// One case is left to the store: a claim with another fingerprint on a
// record whose lease has expired (an abandoned claim). The memory store
// refuses it as a mismatch until the record is purged; a store that forgets
// abandoned claims at once (key expiry) lets it acquire. Both are
// conformant.
//
// Time is the store's own, and the suite does not move it: the cases about
// expiry use Harness.Short as their lease and retention (150ms by default)
// and sleep for real. A store whose server keeps time (key expiry in Redis,
// the statement's time in SQL) needs nothing else; a store that reads the
// process's clock may also run the suite inside a testing/synctest bubble's
// test of its own, where the sleeps are instant.
package storetest
