package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// Harness is one store under test.
type Harness struct {
	// Store is the store under test. Each harness may share a backend with
	// others (the suite uses keys no other case uses), but must not be
	// shared with tests that are not part of this run.
	Store idempotency.Store

	// Short is the lease and retention of the cases about expiry, which
	// sleep for twice as long: long enough for the store's server to be told
	// in time, short enough to keep the suite quick. Defaults to 150ms.
	Short time.Duration

	// MaxResponseBytes is the largest response the store keeps, as it
	// documents it; the suite checks that one of that size is stored and
	// one byte more refused with ErrTooLarge. Zero means the store sets no
	// bound of its own (it must then keep responses of several MiB).
	MaxResponseBytes int
}

// long is the lease of cases that are not about expiry: long enough that a
// starved CPU never turns it into a takeover.
const long = time.Hour

// Run runs every case of the suite as a parallel subtest of t. newHarness is
// called once per case, possibly concurrently, and returns a harness whose
// store no other test uses; it registers its own cleanup with t.Cleanup.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"ClaimNew", testClaimNew},
		{"ClaimHeld", testClaimHeld},
		{"ConcurrentClaim", testConcurrentClaim},
		{"Renew", testRenew},
		{"LeaseExpiryTakeover", testTakeover},
		{"StaleTokenRejected", testStaleToken},
		{"CompleteAndReplay", testCompleteAndReplay},
		{"Retention", testRetention},
		{"FingerprintKept", testFingerprintKept},
		{"Release", testRelease},
		{"LargeResponse", testLargeResponse},
		{"EmptyResponse", testEmptyResponse},
		{"Keys", testKeys},
		{"UnknownKey", testUnknownKey},
		{"TokensUnique", testTokensUnique},
		{"ContextCancelled", testContextCancelled},
		{"Limits", testLimits},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			hn := newHarness(t)
			if hn.Store == nil {
				t.Fatal("storetest: harness has no Store")
			}
			h := &harness{Harness: hn, prefix: fmt.Sprintf("storetest/%s/%016x/", c.name, rand.Uint64())}
			if h.Short <= 0 {
				h.Short = 150 * time.Millisecond
			}
			c.run(t, h)
		})
	}
}

type harness struct {
	Harness
	prefix string
}

func (h *harness) key(name string) string { return h.prefix + name }

// short is the lease or retention of cases about expiry.
func (h *harness) short() time.Duration { return h.Short }

// pass lets d go by.
func (h *harness) pass(d time.Duration) { time.Sleep(d) }

func (h *harness) claim(t *testing.T, key, fp string, lease time.Duration) idempotency.Claim {
	t.Helper()
	c, err := h.Store.Claim(context.Background(), key, fp, lease)
	if err != nil {
		t.Fatalf("Claim(%q): %v", key, err)
	}
	return c
}

func (h *harness) mustAcquire(t *testing.T, key, fp string, lease time.Duration) int64 {
	t.Helper()
	c := h.claim(t, key, fp, lease)
	if !c.Acquired {
		t.Fatalf("Claim(%q): not acquired, record %+v; want acquired", key, summary(c.Record))
	}
	return c.Token
}

func (h *harness) mustNotAcquire(t *testing.T, key, fp string, lease time.Duration) idempotency.Record {
	t.Helper()
	c := h.claim(t, key, fp, lease)
	if c.Acquired {
		t.Fatalf("Claim(%q): acquired with token %d; want the existing record", key, c.Token)
	}
	return c.Record
}

func (h *harness) get(t *testing.T, key string) idempotency.Record {
	t.Helper()
	r, err := h.Store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r
}

func (h *harness) complete(t *testing.T, key string, token int64, resp []byte, retention time.Duration) {
	t.Helper()
	if err := h.Store.Complete(context.Background(), key, token, resp, retention); err != nil {
		t.Fatalf("Complete(%q): %v", key, err)
	}
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: error %v; want %v", what, got, want)
	}
}

// summary prints a record without its (possibly large) response.
func summary(r idempotency.Record) string {
	return fmt.Sprintf("{key %q fp %q %v token %d ttl %v response %d bytes}",
		r.Key, r.Fingerprint, r.Status, r.Token, r.TTL, len(r.Response))
}

func testClaimNew(t *testing.T, h *harness) {
	k := h.key("k")
	tok := h.mustAcquire(t, k, "fp1", long)
	r := h.get(t, k)
	if r.Status != idempotency.StatusInProgress || r.Fingerprint != "fp1" || r.Token != tok || r.Key != k {
		t.Fatalf("Get after Claim = %s; want in progress, fingerprint fp1, token %d, key %q", summary(r), tok, k)
	}
	if r.TTL <= 0 || r.TTL > long {
		t.Fatalf("Get after Claim: TTL %v; want the lease left, in (0, %v]", r.TTL, long)
	}
}

func testClaimHeld(t *testing.T, h *harness) {
	k := h.key("k")
	tok := h.mustAcquire(t, k, "fp1", long)
	r := h.mustNotAcquire(t, k, "fp1", long)
	if r.Status != idempotency.StatusInProgress || r.Token != tok || r.Fingerprint != "fp1" {
		t.Fatalf("second Claim returned %s; want in progress with token %d and fingerprint fp1", summary(r), tok)
	}
	if r.TTL <= 0 || r.TTL > long {
		t.Fatalf("second Claim: TTL %v; want the lease left, in (0, %v]", r.TTL, long)
	}
}

func testConcurrentClaim(t *testing.T, h *harness) {
	const n = 100
	k := h.key("k")
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		claims   = make([]idempotency.Claim, n)
		errs     = make([]error, n)
		ctx      = context.Background()
		acquired []int
	)
	for i := range n {
		wg.Go(func() {
			<-start
			claims[i], errs[i] = h.Store.Claim(ctx, k, "fp", long)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claimer %d: %v", i, errs[i])
		}
		if claims[i].Acquired {
			acquired = append(acquired, i)
		}
	}
	if len(acquired) != 1 {
		t.Fatalf("%d of %d concurrent claimers acquired the key (%v); want exactly 1", len(acquired), n, acquired)
	}
	tok := claims[acquired[0]].Token
	for i := range n {
		if !claims[i].Acquired && claims[i].Record.Token != tok {
			t.Fatalf("claimer %d saw token %d; the winner holds %d", i, claims[i].Record.Token, tok)
		}
	}
}

func testRenew(t *testing.T, h *harness) {
	ctx := context.Background()
	k := h.key("k")
	d := h.short()
	tok := h.mustAcquire(t, k, "fp", d)
	// Renewing with a long lease outlasts the first one.
	if err := h.Store.Renew(ctx, k, tok, long); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	h.pass(2 * d)
	h.mustNotAcquire(t, k, "fp", d)
	// Renewing sets the lease from now, not from the last one: a short
	// renewal of a long lease lets it lapse.
	if err := h.Store.Renew(ctx, k, tok, d); err != nil {
		t.Fatalf("second Renew: %v", err)
	}
	h.pass(2 * d)
	if tok2 := h.mustAcquire(t, k, "fp", long); tok2 == tok {
		t.Fatalf("takeover after the renewed lease lapsed reused token %d", tok)
	}
}

func testTakeover(t *testing.T, h *harness) {
	k := h.key("k")
	d := h.short()
	old := h.mustAcquire(t, k, "fp", d)
	h.pass(2 * d)
	tok := h.mustAcquire(t, k, "fp", long)
	if tok == old {
		t.Fatalf("takeover got the dead holder's token %d; want a new one", old)
	}
	r := h.get(t, k)
	if r.Status != idempotency.StatusInProgress || r.Token != tok {
		t.Fatalf("Get after takeover = %s; want in progress with token %d", summary(r), tok)
	}
	h.complete(t, k, tok, []byte("new"), long)
	if got := h.get(t, k); got.Status != idempotency.StatusCompleted || string(got.Response) != "new" {
		t.Fatalf("Get after the new holder completed = %s, response %q", summary(got), got.Response)
	}
}

func testStaleToken(t *testing.T, h *harness) {
	ctx := context.Background()
	k := h.key("k")
	d := h.short()
	old := h.mustAcquire(t, k, "fp", d)
	h.pass(2 * d)
	tok := h.mustAcquire(t, k, "fp", long)

	wantErr(t, "Renew with the stale token", h.Store.Renew(ctx, k, old, long), idempotency.ErrLeaseLost)
	wantErr(t, "Complete with the stale token", h.Store.Complete(ctx, k, old, []byte("old"), long), idempotency.ErrLeaseLost)
	wantErr(t, "Release with the stale token", h.Store.Release(ctx, k, old), idempotency.ErrLeaseLost)
	r := h.get(t, k)
	if r.Status != idempotency.StatusInProgress || r.Token != tok || len(r.Response) != 0 {
		t.Fatalf("after the stale holder's late writes: %s; want in progress with token %d and no response", summary(r), tok)
	}

	// Once completed, the record is no one's to renew, complete or release.
	h.complete(t, k, tok, []byte("new"), long)
	wantErr(t, "Renew after Complete", h.Store.Renew(ctx, k, tok, long), idempotency.ErrLeaseLost)
	wantErr(t, "Complete twice", h.Store.Complete(ctx, k, tok, []byte("again"), long), idempotency.ErrLeaseLost)
	wantErr(t, "Release after Complete", h.Store.Release(ctx, k, tok), idempotency.ErrLeaseLost)
	wantErr(t, "Complete with the stale token after Complete", h.Store.Complete(ctx, k, old, []byte("old"), long), idempotency.ErrLeaseLost)
	if r := h.get(t, k); r.Status != idempotency.StatusCompleted || string(r.Response) != "new" {
		t.Fatalf("completed record changed by rejected writes: %s, response %q", summary(r), r.Response)
	}
}

func testCompleteAndReplay(t *testing.T, h *harness) {
	k := h.key("k")
	tok := h.mustAcquire(t, k, "fp", long)
	resp := []byte("HTTP/1.1 201\r\n\x00\xff binary too")
	h.complete(t, k, tok, resp, long)
	r := h.mustNotAcquire(t, k, "fp", long)
	if r.Status != idempotency.StatusCompleted || !bytes.Equal(r.Response, resp) || r.Fingerprint != "fp" {
		t.Fatalf("Claim after Complete = %s, response %q; want completed, fingerprint fp, response %q", summary(r), r.Response, resp)
	}
	g := h.get(t, k)
	if g.Status != idempotency.StatusCompleted || !bytes.Equal(g.Response, resp) || g.Key != k {
		t.Fatalf("Get after Complete = %s, response %q; want completed with %q", summary(g), g.Response, resp)
	}
	if g.TTL <= 0 || g.TTL > long {
		t.Fatalf("Get after Complete: TTL %v; want the retention left, in (0, %v]", g.TTL, long)
	}
}

func testRetention(t *testing.T, h *harness) {
	k := h.key("k")
	d := h.short()
	tok := h.mustAcquire(t, k, "fp", long)
	h.complete(t, k, tok, []byte("done"), d)
	h.mustNotAcquire(t, k, "fp", long)
	h.pass(2 * d)
	if r, err := h.Store.Get(context.Background(), k); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("Get after the retention = %s, %v; want ErrNotFound", summary(r), err)
	}
	if tok2 := h.mustAcquire(t, k, "fp", long); tok2 == tok {
		t.Fatalf("claim after the retention reused token %d", tok)
	}
}

func testFingerprintKept(t *testing.T, h *harness) {
	k := h.key("k")
	tok := h.mustAcquire(t, k, "fp-a", long)
	r := h.mustNotAcquire(t, k, "fp-b", long)
	if r.Fingerprint != "fp-a" || r.Token != tok {
		t.Fatalf("Claim with another fingerprint while held = %s; want fingerprint fp-a, token %d", summary(r), tok)
	}
	h.complete(t, k, tok, []byte("a"), long)
	r = h.mustNotAcquire(t, k, "fp-b", long)
	if r.Status != idempotency.StatusCompleted || r.Fingerprint != "fp-a" || string(r.Response) != "a" {
		t.Fatalf("Claim with another fingerprint after Complete = %s, response %q; want the completed record of fp-a", summary(r), r.Response)
	}
	if g := h.get(t, k); g.Fingerprint != "fp-a" || string(g.Response) != "a" {
		t.Fatalf("record changed by a mismatching claim: %s", summary(g))
	}
}

func testRelease(t *testing.T, h *harness) {
	ctx := context.Background()
	k := h.key("k")
	tok := h.mustAcquire(t, k, "fp", long)
	if err := h.Store.Release(ctx, k, tok); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if r, err := h.Store.Get(ctx, k); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("Get after Release = %s, %v; want ErrNotFound", summary(r), err)
	}
	tok2 := h.mustAcquire(t, k, "fp2", long)
	if tok2 == tok {
		t.Fatalf("claim after Release reused token %d", tok)
	}
	if r := h.get(t, k); r.Fingerprint != "fp2" {
		t.Fatalf("claim after Release kept the old fingerprint: %s", summary(r))
	}
	wantErr(t, "second Release with the old token", h.Store.Release(ctx, k, tok), idempotency.ErrLeaseLost)
	if r := h.get(t, k); r.Token != tok2 {
		t.Fatalf("stale Release removed the new claim: %s", summary(r))
	}
}

func testLargeResponse(t *testing.T, h *harness) {
	k := h.key("k")
	resp := make([]byte, 1<<20)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(resp)
	tok := h.mustAcquire(t, k, "fp", long)
	h.complete(t, k, tok, resp, long)
	if r := h.get(t, k); !bytes.Equal(r.Response, resp) {
		t.Fatalf("1 MiB response came back as %d bytes, not byte-exact", len(r.Response))
	}
	if r := h.mustNotAcquire(t, k, "fp", long); !bytes.Equal(r.Response, resp) {
		t.Fatalf("Claim returned a 1 MiB response as %d bytes, not byte-exact", len(r.Response))
	}
}

func testEmptyResponse(t *testing.T, h *harness) {
	for _, resp := range [][]byte{nil, {}} {
		k := h.key(fmt.Sprintf("k%v", resp == nil))
		tok := h.mustAcquire(t, k, "fp", long)
		h.complete(t, k, tok, resp, long)
		r := h.get(t, k)
		if r.Status != idempotency.StatusCompleted || len(r.Response) != 0 {
			t.Fatalf("empty response: Get = %s; want completed with 0 bytes", summary(r))
		}
	}
}

func testKeys(t *testing.T, h *harness) {
	long300 := strings.Repeat("k", 300)
	// Keys are compared byte for byte: a store must not fold case, trim,
	// normalise Unicode or truncate.
	keys := []string{
		"unicode/ключ-键-🔑",
		"spaces and \"quotes\" and 'apostrophes' and \\ and % and _",
		long300,
		long300[:299] + "j", // differs from long300 only in its last byte
		strings.Repeat("é", 200),
		strings.Repeat("0123456789", 70), // 700 bytes: a scoped key of the middleware can be this long
		"case", "CASE",
	}
	toks := make(map[int64]string)
	for _, name := range keys {
		k := h.key(name)
		tok := h.mustAcquire(t, k, "fp", long)
		if other, dup := toks[tok]; dup {
			t.Fatalf("keys %q and %q got the same token", other, name)
		}
		toks[tok] = name
		h.complete(t, k, tok, []byte(name), long)
	}
	for _, name := range keys {
		k := h.key(name)
		r := h.get(t, k)
		if string(r.Response) != name || r.Key != k {
			t.Fatalf("key %q: Get returned key %q response %q; keys were conflated or altered", name, r.Key, r.Response)
		}
	}
}

func testUnknownKey(t *testing.T, h *harness) {
	ctx := context.Background()
	k := h.key("never-claimed")
	if r, err := h.Store.Get(ctx, k); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("Get of an unknown key = %s, %v; want ErrNotFound", summary(r), err)
	}
	wantErr(t, "Renew of an unknown key", h.Store.Renew(ctx, k, 1, long), idempotency.ErrLeaseLost)
	wantErr(t, "Complete of an unknown key", h.Store.Complete(ctx, k, 1, []byte("x"), long), idempotency.ErrLeaseLost)
	wantErr(t, "Release of an unknown key", h.Store.Release(ctx, k, 1), idempotency.ErrLeaseLost)
	if _, err := h.Store.Get(ctx, k); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("rejected writes created a record for an unknown key: %v", err)
	}
}

func testTokensUnique(t *testing.T, h *harness) {
	ctx := context.Background()
	k := h.key("k")
	seen := make(map[int64]bool)
	for i := range 20 {
		tok := h.mustAcquire(t, k, "fp", long)
		if seen[tok] {
			t.Fatalf("claim %d reused token %d", i, tok)
		}
		seen[tok] = true
		if err := h.Store.Release(ctx, k, tok); err != nil {
			t.Fatalf("Release: %v", err)
		}
	}
}

func testContextCancelled(t *testing.T, h *harness) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	k := h.key("k")
	if c, err := h.Store.Claim(cancelled, k, "fp", long); !errors.Is(err, context.Canceled) {
		t.Fatalf("Claim with a cancelled context = %+v, %v; want context.Canceled", c, err)
	}
	if r, err := h.Store.Get(context.Background(), k); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("a Claim with a cancelled context left a record: %s, %v", summary(r), err)
	}
	if _, err := h.Store.Get(cancelled, k); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context: %v; want context.Canceled", err)
	}
	tok := h.mustAcquire(t, k, "fp", long)
	if err := h.Store.Renew(cancelled, k, tok, long); !errors.Is(err, context.Canceled) {
		t.Fatalf("Renew with a cancelled context: %v; want context.Canceled", err)
	}
	if err := h.Store.Complete(cancelled, k, tok, []byte("x"), long); !errors.Is(err, context.Canceled) {
		t.Fatalf("Complete with a cancelled context: %v; want context.Canceled", err)
	}
	if err := h.Store.Release(cancelled, k, tok); !errors.Is(err, context.Canceled) {
		t.Fatalf("Release with a cancelled context: %v; want context.Canceled", err)
	}
	if r := h.get(t, k); r.Status != idempotency.StatusInProgress || r.Token != tok {
		t.Fatalf("writes with a cancelled context changed the record: %s", summary(r))
	}
}

// testLimits checks the limits every idempotency.Store holds to: keys of 1
// to 1024 bytes, fingerprints of at most 255 bytes, positive leases and
// retentions, and the store's own bound on responses.
func testLimits(t *testing.T, h *harness) {
	ctx := context.Background()
	k := h.key("")
	k1024 := k + strings.Repeat("k", 1024-len(k))
	tok := h.mustAcquire(t, k1024, strings.Repeat("f", 255), long)
	h.complete(t, k1024, tok, []byte("max"), long)
	if r := h.get(t, k1024); string(r.Response) != "max" || r.Fingerprint != strings.Repeat("f", 255) {
		t.Fatalf("1024-byte key with a 255-byte fingerprint: Get = %s", summary(r))
	}
	_, err := h.Store.Claim(ctx, k1024+"k", "fp", long)
	wantErr(t, "Claim with a 1025-byte key", err, idempotency.ErrTooLarge)
	_, err = h.Store.Get(ctx, k1024+"k")
	wantErr(t, "Get with a 1025-byte key", err, idempotency.ErrTooLarge)
	_, err = h.Store.Claim(ctx, h.key("fp"), strings.Repeat("f", 256), long)
	wantErr(t, "Claim with a 256-byte fingerprint", err, idempotency.ErrTooLarge)
	_, err = h.Store.Claim(ctx, "", "fp", long)
	wantErr(t, "Claim with an empty key", err, idempotency.ErrInvalid)
	_, err = h.Store.Claim(ctx, h.key("lease"), "fp", 0)
	wantErr(t, "Claim with a zero lease", err, idempotency.ErrInvalid)

	kr := h.key("response")
	tok = h.mustAcquire(t, kr, "fp", long)
	wantErr(t, "Renew with a zero lease", h.Store.Renew(ctx, kr, tok, 0), idempotency.ErrInvalid)
	wantErr(t, "Complete with a zero retention", h.Store.Complete(ctx, kr, tok, []byte("x"), 0), idempotency.ErrInvalid)
	if max := h.MaxResponseBytes; max > 0 {
		wantErr(t, "Complete with a response over the bound", h.Store.Complete(ctx, kr, tok, make([]byte, max+1), long), idempotency.ErrTooLarge)
		if r := h.get(t, kr); r.Status != idempotency.StatusInProgress || r.Token != tok {
			t.Fatalf("a refused response changed the record: %s", summary(r))
		}
		h.complete(t, kr, tok, make([]byte, max), long)
	}
}
