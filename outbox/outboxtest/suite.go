package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/retry"
)

// Run runs the conformance suite against the backend that newHarness makes,
// the way testing/slogtest checks a slog.Handler: every test is a subtest
// of t, asks newHarness for a fresh outbox, and may run in parallel with the
// others. Under testing.Short the volume tests run smaller.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"EnqueueRefusesBadInput", testEnqueueRefusesBadInput},
		{"RollbackPublishesNothing", testRollbackPublishesNothing},
		{"ReverseCommitOrder", testReverseCommitOrder},
		{"LongOpenTransaction", testLongOpenTransaction},
		{"ClaimIsExclusive", testClaimIsExclusive},
		{"NotBefore", testNotBefore},
		{"LeaseTakeoverRejectsLateWrite", testLeaseTakeoverRejectsLateWrite},
		{"RelayLeaseTakeover", testRelayLeaseTakeover},
		{"KeyOrderAndPositions", testKeyOrderAndPositions},
		{"KeyWritersSerialise", testKeyWritersSerialise},
		{"PoisonHeadBlocksOnlyItsKey", testPoisonHeadBlocksOnlyItsKey},
		{"PoisonHeadDeadLetteredThenKeyContinues", testPoisonHeadDeadLettered},
		{"PausedDestinationIsolated", testPausedDestination},
		{"PauseRecordedOnceForEveryClaim", testPauseRecorded},
		{"GoneDestinationPausedForEveryRelay", testGoneForEveryRelay},
		{"PermanentDeadLetterRequeue", testPermanentDeadLetterRequeue},
		{"RetryAfterHonoured", testRetryAfterHonoured},
		{"MaxAttemptsDeadLetter", testMaxAttempts},
		{"AbandonedClaimsSpendNoAttempts", testAbandonedClaims},
		{"DeadLetterAdmin", testDeadLetterAdmin},
		{"RequeueGoesToTheTailOfItsKey", testRequeueToTail},
		{"MalformedRowDeadLettered", testMalformedRow},
		{"PollOnlyDelivers", testPollOnly},
		{"CleanupKeepsPendingClaimedDead", testCleanupSafety},
		{"StopReleasesClaimed", testStopReleases},
		{"FourRelaysExactlyOnce", testFourRelaysExactlyOnce},
		{"TraceContextContinues", testTraceContext},
		{"Stats", testStats},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newHarness(t))
		})
	}
}

const waitLong = 60 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// commit enqueues msgs in one transaction and commits it.
func commit(t *testing.T, h Harness, msgs ...outbox.Message) {
	t.Helper()
	ctx := ctxFor(t)
	tx, err := h.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if err := tx.Enqueue(ctx, msgs...); err != nil {
		_ = tx.Rollback()
		t.Fatalf("enqueue: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func msgs(topic, key string, n int, prefix string) []outbox.Message {
	out := make([]outbox.Message, n)
	for i := range out {
		out[i] = outbox.Message{Topic: topic, Key: key, Payload: []byte(prefix + strconv.Itoa(i))}
	}
	return out
}

// testOptions keep tests quick: short backoff and polling, long leases (so
// that a starved CPU does not turn into a takeover).
func testOptions(h Harness, extra ...outbox.Option) []outbox.Option {
	opts := []outbox.Option{
		outbox.WithLease(time.Minute),
		outbox.WithPublishTimeout(20 * time.Second),
		outbox.WithBackoff(5*time.Millisecond, 20*time.Millisecond),
		outbox.WithPollInterval(50 * time.Millisecond),
		outbox.WithLogger(slog.New(slog.DiscardHandler)), // dead letters are expected here
	}
	opts = append(opts, h.RelayOptions...)
	return append(opts, extra...)
}

func startRelay(t *testing.T, h Harness, pub outbox.Publisher, opts ...outbox.Option) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(h.Store, pub, testOptions(h, opts...)...)
	if err != nil {
		t.Fatalf("NewRelay: %v", err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { stop(t, r) })
	return r
}

func stop(t *testing.T, r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func payloads(ds []outbox.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Payload)
	}
	return out
}

func ofKey(ds []outbox.Delivery, key string) []outbox.Delivery {
	var out []outbox.Delivery
	for _, d := range ds {
		if d.Key == key {
			out = append(out, d)
		}
	}
	return out
}

// claimed is a message claimed directly from the store under test.
type claimed struct {
	outbox.Delivery
	backend.Claim
}

func claimAll(t *testing.T, h Harness, lease time.Duration) []claimed {
	t.Helper()
	var out []claimed
	err := h.Store.Claim(ctxFor(t), backend.ClaimRequest{Limit: 1000, Lease: lease}, func(d outbox.Delivery, c backend.Claim) {
		out = append(out, claimed{d, c})
	})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return out
}

// settle writes back an outcome of kind for each of cs and returns how many
// the store refused.
func settle(t *testing.T, h Harness, kind backend.OutcomeKind, cs ...claimed) int {
	t.Helper()
	outs := make([]backend.Outcome, len(cs))
	for i, c := range cs {
		outs[i] = backend.Outcome{Position: c.Position, Token: c.Token, Kind: kind}
	}
	refused, err := h.Store.Settle(ctxFor(t), outs)
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	for _, p := range refused {
		if !slices.ContainsFunc(cs, func(c claimed) bool { return c.Position == p }) {
			t.Errorf("Settle refused position %d, which it was not given", p)
		}
	}
	return len(refused)
}

func testEnqueueRefusesBadInput(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	cases := []struct {
		name string
		msg  outbox.Message
	}{
		{"empty topic", outbox.Message{Payload: []byte("x")}},
		{"blank topic", outbox.Message{Topic: "  ", Payload: []byte("x")}},
		{"payload over the limit", outbox.Message{Topic: "t", Payload: make([]byte, 1<<20+1)}}, // every store takes 1 MiB by default
		{"id not a UUID", outbox.Message{ID: "42", Topic: "t"}},
		// Headers are HTTP fields (RFC 9110): a name is a token, a value
		// has no control character and no surrounding space.
		{"empty header name", outbox.Message{Topic: "t", Headers: map[string]string{"": "v"}}},
		{"header name with a space", outbox.Message{Topic: "t", Headers: map[string]string{"X Tenant": "v"}}},
		{"header name with a colon", outbox.Message{Topic: "t", Headers: map[string]string{"X-A:": "v"}}},
		{"header name not ASCII", outbox.Message{Topic: "t", Headers: map[string]string{"X-Ünicode": "v"}}},
		{"header value with CR LF", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": "a\r\nX-Injected: 1"}}},
		{"header value with a LF", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": "a\nb"}}},
		{"header value with a NUL", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": "a\x00b"}}},
		{"header value with DEL", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": "a\x7fb"}}},
		{"header value with a leading space", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": " a"}}},
		{"header value with a trailing tab", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": "a\t"}}},
		// obs-text is a field value, but stores keep headers as UTF-8.
		{"header value not UTF-8", outbox.Message{Topic: "t", Headers: map[string]string{"X-A": "caf\xe9"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx, err := h.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			good := outbox.Message{Topic: "t", Payload: []byte("good")}
			err = tx.Enqueue(ctx, good, c.msg)
			var ie *outbox.InvalidMessageError
			if !errors.Is(err, outbox.ErrInvalid) || !errors.As(err, &ie) || ie.Index != 1 {
				t.Errorf("Enqueue(%s) = %v, want an InvalidMessageError for index 1", c.name, err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if c := claimAll(t, h, time.Minute); len(c) != 0 {
		t.Errorf("a refused batch wrote %d messages", len(c))
	}
	// What RFC 9110 allows is accepted: tokens with their punctuation,
	// values with inner spaces and tabs, UTF-8 text, the empty value.
	commit(t, h, outbox.Message{Topic: "t", Headers: map[string]string{
		"X-Tenant_ID.v2!#$%&'*+^`|~": "a b\tc", "Content-Type": "application/json; charset=utf-8",
		"X-Empty": "", "X-UTF8": "café ☕",
	}})
	c := claimAll(t, h, time.Minute)
	if len(c) != 1 || len(c[0].Headers) != 4 || c[0].Headers["X-UTF8"] != "café ☕" || c[0].Malformed != nil {
		t.Errorf("valid headers: claimed %d messages (%+v)", len(c), c)
	}
}

func testRollbackPublishesNothing(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	tx, err := h.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Enqueue(ctx, msgs("orders", "", 3, "rolled-back-")...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{}
	r := startRelay(t, h, rec)
	commit(t, h, outbox.Message{Topic: "orders", Payload: []byte("committed")})
	rec.WaitFor(t, waitLong, 1)
	stop(t, r) // writes the delivery back
	// The committed message was enqueued after the rolled-back ones, and
	// a relay claims in order of readiness: had they existed, they would
	// have come first. Check the store as well.
	if got := payloads(rec.Delivered()); !slices.Equal(got, []string{"committed"}) {
		t.Errorf("delivered %q, want only the committed message", got)
	}
	st, err := h.Store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 {
		t.Errorf("Stats.Pending = %d after the rollback and one delivery, want 0", st.Pending)
	}
}

func testReverseCommitOrder(t *testing.T, h Harness) {
	if h.SingleWriter {
		t.Skip("the backend admits one write transaction at a time: commits cannot interleave")
	}
	ctx := ctxFor(t)
	rec := &Recorder{}
	startRelay(t, h, rec)
	first, err := h.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback() //nolint:errcheck
	if err := first.Enqueue(ctx, outbox.Message{Topic: "t", Payload: []byte("lower id, commits second")}); err != nil {
		t.Fatal(err)
	}
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("higher id, commits first")})
	rec.WaitFor(t, waitLong, 1)
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, waitLong, 2)
	got := payloads(rec.Delivered())
	slices.Sort(got)
	if want := []string{"higher id, commits first", "lower id, commits second"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
}

func testLongOpenTransaction(t *testing.T, h Harness) {
	if h.SingleWriter {
		t.Skip("the backend admits one write transaction at a time")
	}
	ctx := ctxFor(t)
	rec := &Recorder{}
	startRelay(t, h, rec)
	open, err := h.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback() //nolint:errcheck
	if err := open.Enqueue(ctx, outbox.Message{Topic: "t", Payload: []byte("slow")}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		commit(t, h, outbox.Message{Topic: "t", Payload: []byte("fast-" + strconv.Itoa(i))})
	}
	rec.WaitFor(t, waitLong, 20)
	if err := open.Commit(); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, waitLong, 21)
	if got := payloads(rec.Delivered()); got[20] != "slow" {
		t.Errorf("last delivery %q, want the held transaction's message", got[20])
	}
}

func testClaimIsExclusive(t *testing.T, h Harness) {
	commit(t, h, msgs("t", "", 10, "m")...)
	a := claimAll(t, h, time.Minute)
	if len(a) != 10 {
		t.Fatalf("claimed %d, want 10", len(a))
	}
	if b := claimAll(t, h, time.Minute); len(b) != 0 {
		t.Fatalf("second claim got %d messages under a live lease", len(b))
	}
	for i, c := range a {
		if c.Attempt != 1 || c.Token == "" || c.ID == "" || c.CreatedAt.IsZero() {
			t.Errorf("claimed[%d] = attempt %d token %q id %q created %v", i, c.Attempt, c.Token, c.ID, c.CreatedAt)
		}
	}
	forged := a[0]
	forged.Token = a[0].Token[:len(a[0].Token)-1] + map[bool]string{true: "0", false: "1"}[strings.HasSuffix(a[0].Token, "1")]
	if n := settle(t, h, backend.Delivered, forged); n != 1 {
		t.Errorf("Settle with a wrong token: %d refused, want the lease lost (1 refused)", n)
	}
	if n := settle(t, h, backend.Delivered, a...); n != 0 {
		t.Errorf("Settle: %d of %d refused", n, len(a))
	}
	if n := settle(t, h, backend.Delivered, a[0]); n != 1 {
		t.Errorf("second Settle of a settled message: %d refused, want the lease lost (1 refused)", n)
	}
}

func testNotBefore(t *testing.T, h Harness) {
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("later"), NotBefore: time.Now().Add(time.Hour)},
		outbox.Message{Topic: "t", Payload: []byte("now")})
	c := claimAll(t, h, time.Minute)
	if len(c) != 1 || string(c[0].Payload) != "now" {
		t.Fatalf("claimed %d messages, want only the one without NotBefore", len(c))
	}
}

func testLeaseTakeoverRejectsLateWrite(t *testing.T, h Harness) {
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("x")})
	slow := claimAll(t, h, 50*time.Millisecond)
	if len(slow) != 1 {
		t.Fatalf("claimed %d", len(slow))
	}
	var fast []claimed
	deadline := time.Now().Add(waitLong)
	for len(fast) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired lease was never taken over")
		}
		time.Sleep(20 * time.Millisecond)
		fast = claimAll(t, h, time.Minute)
	}
	// The expired claim made no attempt (attempts count outcomes): it is
	// counted as abandoned.
	if fast[0].ID != slow[0].ID || fast[0].Attempt != 1 || fast[0].Abandoned != 1 || fast[0].Token == slow[0].Token {
		t.Fatalf("takeover claimed %+v", fast[0])
	}
	if n := settle(t, h, backend.Delivered, slow[0]); n != 1 {
		t.Errorf("late write-back of the expired claim: %d refused, want the lease lost (1 refused)", n)
	}
	if n := settle(t, h, backend.Retry, slow[0]); n != 1 {
		t.Errorf("late reschedule of the expired claim: %d refused, want the lease lost (1 refused)", n)
	}
	if n := settle(t, h, backend.Delivered, fast[0]); n != 0 {
		t.Errorf("write-back of the live claim refused")
	}
}

func testRelayLeaseTakeover(t *testing.T, h Harness) {
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("x")})
	release := make(chan struct{})
	slowStarted := make(chan struct{})
	// The slow publisher ignores its context, as a badly written one may,
	// and outlives the lease; then it reports a failure, which would put
	// the message back to pending were its write-back accepted.
	slow := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		close(slowStarted)
		<-release
		return errors.New("late failure")
	}}
	// A relay that polls hourly and hears no notification: it does not
	// claim the message again itself.
	rs, err := outbox.NewRelay(h.Store, slow, outbox.WithPollInterval(time.Hour),
		outbox.WithLease(300*time.Millisecond), outbox.WithPublishTimeout(200*time.Millisecond),
		outbox.WithLogger(slog.New(slog.DiscardHandler))) // its late write-back is rejected, as expected
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-slowStarted
	fast := &Recorder{}
	rf := startRelay(t, h, fast)
	fast.WaitFor(t, waitLong, 1)
	stop(t, rf)
	close(release)
	stop(t, rs)
	got := fast.Delivered()[0]
	// The slow relay's publish never had its outcome written back: it was an
	// abandoned claim, not an attempt.
	if got.Attempt != 1 || got.ID != slow.Calls()[0].ID {
		t.Errorf("takeover delivery attempt %d id %s, want attempt 1 of the same id %s", got.Attempt, got.ID, slow.Calls()[0].ID)
	}
	r, err := h.Store.Get(ctxFor(t), got.ID)
	if h.DeletesDelivered {
		// Accepted, the late failure would have made it pending again.
		if !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("after the late write-back: %+v, %v; want it gone as delivered, the late failure rejected", r, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.State != outbox.StateDelivered || r.LastError != "" {
		t.Errorf("after the late write-back: state %v, last error %q; want delivered, the late failure rejected", r.State, r.LastError)
	}
}

func testKeyOrderAndPositions(t *testing.T, h Harness) {
	// Several transactions per key, interleaved across keys, a few messages
	// each, some in one batch.
	const keys, perKey = 5, 12
	for round := 0; round < perKey; round += 3 {
		var batch []outbox.Message
		for k := range keys {
			for i := round; i < round+3; i++ {
				batch = append(batch, outbox.Message{Topic: "t", Key: "k" + strconv.Itoa(k), Payload: []byte(strconv.Itoa(i))})
			}
		}
		commit(t, h, batch...)
	}
	commit(t, h, msgs("t", "", 10, "free-")...)
	// Small batches of one key, and a key spread over single-message
	// transactions (backends may write small batches differently).
	commit(t, h, msgs("t", "small", 3, "")...)
	commit(t, h, outbox.Message{Topic: "t", Key: "small", Payload: []byte("3")})
	commit(t, h, msgs("t", "small", 2, "x")...)
	rec := &Recorder{}
	startRelay(t, h, rec)
	rec.WaitFor(t, waitLong, keys*perKey+16)
	if got := payloads(ofKey(rec.Delivered(), "small")); !slices.Equal(got, []string{"0", "1", "2", "3", "x0", "x1"}) {
		t.Errorf("key small delivered %q, want 0 1 2 3 x0 x1", got)
	}
	for k := range keys {
		got := ofKey(rec.Delivered(), "k"+strconv.Itoa(k))
		for i, d := range got {
			if string(d.Payload) != strconv.Itoa(i) {
				t.Fatalf("key k%d: delivery %d is message %s: out of order", k, i, d.Payload)
			}
			if p := d.Headers[outbox.PositionHeader]; p != strconv.FormatInt(d.Position, 10) {
				t.Errorf("%s header %q, position %d", outbox.PositionHeader, p, d.Position)
			}
			if i > 0 && d.Position <= got[i-1].Position {
				t.Errorf("key k%d: positions not increasing: %d after %d", k, d.Position, got[i-1].Position)
			}
		}
	}
}

// testKeyWritersSerialise: a transaction that enqueued for a key and is
// still open holds back a second transaction enqueueing for the same key,
// so the second can neither commit first nor be delivered first: a message
// of a key is never overtaken by a later one whose transaction committed
// while it was pending.
func testKeyWritersSerialise(t *testing.T, h Harness) {
	if h.SingleWriter {
		t.Skip("the backend admits one write transaction at a time")
	}
	ctx := ctxFor(t)
	rec := &Recorder{}
	startRelay(t, h, rec)
	first, err := h.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback() //nolint:errcheck
	if err := first.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k", Payload: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		tx, err := h.Begin(ctx)
		if err != nil {
			second <- err
			return
		}
		if err := tx.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k", Payload: []byte("second")}); err != nil {
			_ = tx.Rollback()
			second <- err
			return
		}
		second <- tx.Commit()
	}()
	// Give a backend without the lock the time to commit and deliver the
	// second message first; other keys keep flowing meanwhile.
	commit(t, h, outbox.Message{Topic: "t", Key: "other", Payload: []byte("other")})
	rec.WaitFor(t, waitLong, 1)
	time.Sleep(200 * time.Millisecond)
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, waitLong, 3)
	got := ofKey(rec.Delivered(), "k")
	if p := payloads(got); !slices.Equal(p, []string{"first", "second"}) {
		t.Errorf("key k delivered %q, want first then second", p)
	}
	if got[0].Position > got[1].Position {
		t.Errorf("positions %d then %d: not in commit order", got[0].Position, got[1].Position)
	}
}

func testPoisonHeadBlocksOnlyItsKey(t *testing.T, h Harness) {
	// The head of key "poison" fails five times, and keeps failing until
	// every message of the other keys was delivered: the test ends only if
	// the other keys flow while the head is failing.
	var fails, others atomic.Int32
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if d.Key != "poison" {
			others.Add(1)
			return nil
		}
		if string(d.Payload) == "0" && (fails.Load() < 5 || others.Load() < 20) {
			fails.Add(1)
			return errors.New("consumer down")
		}
		return nil
	}}
	commit(t, h, msgs("t", "poison", 3, "")...)
	for k := range 4 {
		commit(t, h, msgs("t", "ok"+strconv.Itoa(k), 5, "")...)
	}
	startRelay(t, h, rec, outbox.WithMaxAttempts(1000))
	rec.WaitFor(t, waitLong, 23)
	if got := payloads(ofKey(rec.Delivered(), "poison")); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Errorf("poison key delivered %q, want 0 1 2 in order", got)
	}
	calls := rec.Calls()
	headDone := slices.IndexFunc(calls, func(x outbox.Delivery) bool {
		return x.Key == "poison" && string(x.Payload) == "0" && x.Attempt == int(fails.Load())+1
	})
	if headDone < 0 {
		t.Fatal("the head never succeeded")
	}
	for _, c := range calls[:headDone] {
		if c.Key == "poison" && string(c.Payload) != "0" {
			t.Errorf("message %s of the poison key was published before its head succeeded", c.Payload)
		}
	}
	for _, k := range []string{"ok0", "ok1", "ok2", "ok3"} {
		if got := payloads(ofKey(rec.Delivered(), k)); !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
			t.Errorf("key %s delivered %q, want 0..4 in order", k, got)
		}
	}
	if n := fails.Load(); n < 5 {
		t.Errorf("the head failed %d times, want at least 5", n)
	}
}

func testPoisonHeadDeadLettered(t *testing.T, h Harness) {
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if d.Key == "k" && string(d.Payload) == "0" {
			return errors.New("always fails")
		}
		return nil
	}}
	commit(t, h, msgs("t", "k", 3, "")...)
	commit(t, h, msgs("t", "other", 3, "")...)
	startRelay(t, h, rec, outbox.WithMaxAttempts(5))
	rec.WaitFor(t, waitLong, 5)
	if got := payloads(ofKey(rec.Delivered(), "k")); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("key delivered %q after its head was dead-lettered, want 1 2", got)
	}
	tries := 0
	for _, c := range rec.Calls() {
		if c.Key == "k" && string(c.Payload) == "0" {
			tries++
		}
	}
	if tries != 5 {
		t.Errorf("the head was tried %d times, want 5", tries)
	}
	dead, err := h.Store.ListDead(ctxFor(t), "", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Attempts != 5 || !strings.Contains(dead[0].LastError, "always fails") {
		t.Errorf("dead letters %+v, want the head with 5 attempts and its last error", dead)
	}
}

func testPausedDestination(t *testing.T, h Harness) {
	var downCalls atomic.Int32
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if d.Topic == "down" {
			downCalls.Add(1)
			return outbox.Pause(errors.New("breaker open"), time.Hour)
		}
		return nil
	}}
	commit(t, h, msgs("down", "", 50, "d")...)
	commit(t, h, msgs("up", "", 200, "u")...)
	r := startRelay(t, h, rec, outbox.WithBatchSize(20), outbox.WithDestinationConcurrency(4))
	rec.WaitFor(t, waitLong, 200)
	stop(t, r)
	for _, d := range rec.Delivered() {
		if d.Topic != "up" {
			t.Fatalf("delivered %s to a paused destination", d.Topic)
		}
	}
	// Once paused, the destination is not called: at most the publishes
	// in flight when the pause began (the topic's concurrency) were made.
	if n := downCalls.Load(); n > 4 {
		t.Errorf("the paused destination was called %d times, want at most 4 (its concurrency)", n)
	}
	for _, c := range rec.Calls() {
		if c.Topic != "down" {
			continue
		}
		r, err := h.Store.Get(ctxFor(t), c.ID)
		if c.Attempt != 1 {
			t.Errorf("paused message published at attempt %d, want 1", c.Attempt)
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.State != outbox.StatePending || r.Attempts != 0 {
			t.Errorf("paused message: state %v attempts %d, want pending with its attempts kept (0)", r.State, r.Attempts)
		}
		// The pause is the destination's, recorded once; the message keeps
		// its schedule (issue 13: it used to carry the pause's delay, and
		// stayed held after the pause was lifted).
		if r.AvailableAt.After(time.Now().Add(time.Minute)) {
			t.Errorf("paused message available at %v, want its schedule kept (now)", r.AvailableAt)
		}
	}
	ps, err := h.Store.Pauses(ctxFor(t))
	if err != nil || len(ps) != 1 || ps[0].Destination != "down" || ps[0].Until.Before(time.Now().Add(30*time.Minute)) {
		t.Errorf("Pauses = %+v, %v; want down, paused for about an hour", ps, err)
	}
}

func testPermanentDeadLetterRequeue(t *testing.T, h Harness) {
	var broken atomic.Bool
	broken.Store(true)
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		if broken.Load() {
			return retry.Permanent(errors.New("410 gone"))
		}
		return nil
	}}
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("x")})
	startRelay(t, h, rec)
	ctx := ctxFor(t)
	var dead []outbox.Record
	for deadline := time.Now().Add(waitLong); len(dead) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
		var err error
		if dead, err = h.Store.ListDead(ctx, "t", 0, 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.Calls()) != 1 || dead[0].Attempts != 1 || !strings.Contains(dead[0].LastError, "410 gone") {
		t.Fatalf("permanent error: %d calls, dead letter %+v; want one attempt, dead at once", len(rec.Calls()), dead[0])
	}
	broken.Store(false)
	n, err := h.Store.Requeue(ctx, dead[0].ID)
	if err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	rec.WaitFor(t, waitLong, 1)
	if d := rec.Delivered()[0]; d.ID != dead[0].ID || d.Attempt != 1 {
		t.Errorf("requeued delivery id %s attempt %d, want the same id, attempts reset", d.ID, d.Attempt)
	}
}

func testRetryAfterHonoured(t *testing.T, h Harness) {
	const wait = 300 * time.Millisecond
	var mu sync.Mutex
	var at []time.Time
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) == 1 {
			return retry.After(errors.New("429"), wait)
		}
		return nil
	}}
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("x")})
	startRelay(t, h, rec)
	rec.WaitFor(t, waitLong, 1)
	mu.Lock()
	defer mu.Unlock()
	if gap := at[1].Sub(at[0]); gap < wait {
		t.Errorf("retried after %v, want at least the Retry-After of %v", gap, wait)
	}
}

func testMaxAttempts(t *testing.T, h Harness) {
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error { return fmt.Errorf("attempt %d failed", d.Attempt) }}
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("x")})
	startRelay(t, h, rec, outbox.WithMaxAttempts(3))
	ctx := ctxFor(t)
	for deadline := time.Now().Add(waitLong); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no dead letter")
		}
		dead, err := h.Store.ListDead(ctx, "", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 {
			if dead[0].Attempts != 3 || dead[0].LastError != "attempt 3 failed" {
				t.Errorf("dead letter attempts %d error %q, want 3 and the last error", dead[0].Attempts, dead[0].LastError)
			}
			return
		}
	}
}

func testDeadLetterAdmin(t *testing.T, h Harness) {
	dl := h.Store
	ctx := ctxFor(t)
	commit(t, h, msgs("a", "", 3, "a")...)
	commit(t, h, msgs("b", "", 2, "b")...)
	c := claimAll(t, h, time.Minute)
	outs := make([]backend.Outcome, len(c))
	for i, x := range c {
		outs[i] = backend.Outcome{Position: x.Position, Token: x.Token, Kind: backend.Dead, Error: "reason " + string(x.Payload)}
	}
	if refused, err := h.Store.Settle(ctx, outs); err != nil || len(refused) > 0 {
		t.Fatalf("Settle: %v, refused %v", err, refused)
	}
	all, err := dl.ListDead(ctx, "", 0, 100)
	if err != nil || len(all) != 5 {
		t.Fatalf("ListDead = %d, %v; want 5", len(all), err)
	}
	page, _ := dl.ListDead(ctx, "", all[1].Position, 2)
	if len(page) != 2 || page[0].ID != all[2].ID {
		t.Errorf("paging after position %d gave %v", all[1].Position, page)
	}
	onlyB, _ := dl.ListDead(ctx, "b", 0, 100)
	if len(onlyB) != 2 {
		t.Errorf("ListDead(b) = %d, want 2", len(onlyB))
	}
	// A message waiting behind another of its key can be looked up too.
	const behind = "0190d8a2-0000-7000-8000-0000000000cc"
	commit(t, h, outbox.Message{Topic: "c", Key: "k"}, outbox.Message{ID: behind, Topic: "c", Key: "k"})
	if w, err := dl.Get(ctx, behind); err != nil || w.State != outbox.StatePending || w.Key != "k" {
		t.Errorf("Get(message behind its key's head) = %+v, %v", w, err)
	}
	r, err := dl.Get(ctx, all[0].ID)
	if err != nil || r.State != outbox.StateDead || r.LastError != "reason a0" || string(r.Payload) != "a0" {
		t.Errorf("Get = %+v, %v", r, err)
	}
	if _, err := dl.Get(ctx, "0190d8a2-0000-7000-8000-000000000000"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	// A requeue naming a dead letter and a message that is not dead
	// changes only the dead one.
	commit(t, h, outbox.Message{ID: "0190d8a2-0000-7000-8000-0000000000aa", Topic: "a"})
	if n, err := dl.Requeue(ctx, all[0].ID, all[1].ID, "0190d8a2-0000-7000-8000-0000000000aa"); err != nil || n != 2 {
		t.Errorf("Requeue = %d, %v; want 2", n, err)
	}
	if _, err := dl.Requeue(ctx, "not-a-uuid"); err == nil {
		t.Error("Requeue(not-a-uuid) succeeded")
	}
	if n, err := dl.Discard(ctx, onlyB[0].ID, all[0].ID); err != nil || n != 1 {
		t.Errorf("Discard(dead, requeued) = %d, %v; want 1 (a requeued message is no dead letter)", n, err)
	}
	left, _ := dl.ListDead(ctx, "", 0, 100)
	if len(left) != 2 {
		t.Errorf("%d dead letters left, want 2", len(left))
	}
	st, err := h.Store.Stats(ctx)
	if err != nil || st.Dead != 2 || st.Pending != 5 {
		t.Errorf("Stats = %+v, %v; want 2 dead, 5 pending", st, err)
	}
}

// testMalformedRow: rows damaged behind the API's back (headers that are
// not JSON, or that are no HTTP fields: a name with a space, a value with
// CR LF) are dead-lettered without being published, with the reason, and
// the next message of their key flows. A publisher that sent them would
// fail to build its request or, worse, inject a header.
func testMalformedRow(t *testing.T, h Harness) {
	if h.Corrupt == nil {
		t.Skip("no Corrupt")
	}
	bad := []struct {
		id, key string
		headers map[string]string
	}{
		{"0190d8a2-0000-7000-8000-0000000000b1", "k1", nil},
		{"0190d8a2-0000-7000-8000-0000000000b2", "k2", map[string]string{"X Bad Name": "v"}},
		{"0190d8a2-0000-7000-8000-0000000000b3", "k3", map[string]string{"X-Ok": "a\r\nX-Injected: 1"}},
	}
	for _, b := range bad {
		commit(t, h, outbox.Message{ID: b.id, Topic: "t", Key: b.key, Payload: []byte("bad")})
		commit(t, h, outbox.Message{Topic: "t", Key: b.key, Payload: []byte("after " + b.key)})
		if err := h.Corrupt(ctxFor(t), b.id, b.headers); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("free")})
	rec := &Recorder{}
	startRelay(t, h, rec)
	rec.WaitFor(t, waitLong, len(bad)+1)
	for _, d := range rec.Calls() {
		if string(d.Payload) == "bad" {
			t.Errorf("the malformed message %s was published", d.ID)
		}
	}
	for _, b := range bad {
		if got := payloads(ofKey(rec.Delivered(), b.key)); !slices.Equal(got, []string{"after " + b.key}) {
			t.Errorf("key %s delivered %q, want its next message", b.key, got)
		}
		r, err := h.Store.Get(ctxFor(t), b.id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != outbox.StateDead || !strings.Contains(r.LastError, "malformed") {
			t.Errorf("malformed message %s: state %v reason %q, want dead with the reason", b.key, r.State, r.LastError)
		}
	}
}

// testPollOnly: a relay without a notifier finds a message committed while
// it waited by its next poll. (The relay's own timing is tested in package
// outbox, with testing/synctest.)
func testPollOnly(t *testing.T, h Harness) {
	const poll = 300 * time.Millisecond
	rec := &Recorder{}
	// No notifier: whatever the backend sends at commit is lost.
	r, err := outbox.NewRelay(h.Store, rec, outbox.WithPollInterval(poll), outbox.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, r) })
	time.Sleep(poll / 2) // the relay found nothing and sleeps until its next poll
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("x")})
	rec.WaitFor(t, waitLong, 1)
}

// cleaner is a store that deletes old messages itself (sqloutbox.Store;
// package housekeeping calls it).
type cleaner interface {
	Cleanup(ctx context.Context, retention time.Duration, limit int) (int, error)
	CleanupDead(ctx context.Context, retention time.Duration, limit int) (int, error)
}

func testCleanupSafety(t *testing.T, h Harness) {
	cl, ok := h.Store.(cleaner)
	if !ok {
		t.Skip("the store has no Cleanup and CleanupDead")
	}
	ctx := ctxFor(t)
	commit(t, h, msgs("t", "", 6, "x")...)
	c := claimAll(t, h, time.Minute)
	if len(c) != 6 {
		t.Fatalf("claimed %d", len(c))
	}
	// 2 delivered, 2 dead, 2 still claimed; then 3 pending and unclaimed.
	if n := settle(t, h, backend.Delivered, c[0], c[1]); n != 0 {
		t.Fatalf("%d refused", n)
	}
	if n := settle(t, h, backend.Dead, c[2], c[3]); n != 0 {
		t.Fatalf("%d refused", n)
	}
	commit(t, h, msgs("t", "", 3, "y")...)
	total := 0
	for {
		n, err := cl.Cleanup(ctx, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		total += n
	}
	if h.DeletesDelivered {
		if total != 0 {
			t.Errorf("Cleanup deleted %d messages, want none: the 2 delivered ones went at their delivery", total)
		}
	} else if total != 2 {
		t.Errorf("Cleanup deleted %d messages, want the 2 delivered ones", total)
	}
	st, err := h.Store.Stats(ctx)
	if err != nil || st.Pending != 5 || st.Dead != 2 {
		t.Errorf("Stats after cleanup = %+v, %v; want 5 pending (2 claimed), 2 dead", st, err)
	}
	if n := settle(t, h, backend.Delivered, c[4], c[5]); n != 0 {
		t.Errorf("the claimed messages cannot be settled after cleanup: %d refused", n)
	}
	if n, err := cl.Cleanup(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Errorf("Cleanup within the retention deleted %d, %v", n, err)
	}
	// Dead letters go only through CleanupDead, after their own retention.
	if n, err := cl.CleanupDead(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Errorf("CleanupDead within the retention deleted %d, %v", n, err)
	}
	if n, err := cl.CleanupDead(ctx, 0, 1); err != nil || n != 1 {
		t.Errorf("CleanupDead(limit 1) deleted %d, %v; want 1", n, err)
	}
	if n, err := cl.CleanupDead(ctx, 0, 100); err != nil || n != 1 {
		t.Errorf("CleanupDead deleted %d, %v; want the other dead letter", n, err)
	}
	st, err = h.Store.Stats(ctx)
	if err != nil || st.Pending != 3 || st.Dead != 0 {
		t.Errorf("Stats after CleanupDead = %+v, %v; want 3 pending, no dead letter", st, err)
	}
}

func testStopReleases(t *testing.T, h Harness) {
	started := make(chan struct{}, 100)
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		started <- struct{}{}
		<-ctx.Done() // hangs until the relay gives up on it
		return ctx.Err()
	}}
	commit(t, h, msgs("t", "", 30, "x")...)
	r, err := outbox.NewRelay(h.Store, rec, testOptions(h, outbox.WithLease(time.Hour), outbox.WithPublishTimeout(30*time.Minute), outbox.WithDestinationConcurrency(5))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		<-started
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // do not wait for the hanging publishes
	if err := r.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Stop = %v, want context.Canceled (publishes were cut)", err)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	// Every message is claimable at once, though the leases were an hour,
	// and none lost an attempt.
	c := claimAll(t, h, time.Minute)
	if len(c) != 30 {
		t.Fatalf("after Stop %d of 30 messages were claimable", len(c))
	}
	for _, x := range c {
		if x.Attempt != 1 {
			t.Errorf("message %s: attempt %d after a release, want 1", x.Payload, x.Attempt)
		}
	}
}

func testFourRelaysExactlyOnce(t *testing.T, h Harness) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	const keys = 50
	for i := 0; i < n; i += 500 {
		batch := make([]outbox.Message, 0, 500)
		for j := i; j < min(i+500, n); j++ {
			key := ""
			if j%2 == 0 {
				key = "k" + strconv.Itoa(j%keys)
			}
			batch = append(batch, outbox.Message{Topic: "t", Key: key, Payload: []byte(strconv.Itoa(j))})
		}
		commit(t, h, batch...)
	}
	var mu sync.Mutex
	seen := make(map[string]int, n)
	var all []outbox.Delivery
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		mu.Lock()
		seen[d.ID]++
		all = append(all, d)
		mu.Unlock()
		return nil
	}}
	for range 4 {
		startRelay(t, h, rec)
	}
	rec.WaitFor(t, 5*time.Minute, n)
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("message %s published %d times", id, c)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct messages published, want %d", len(seen), n)
	}
	last := map[string]int{}
	for _, d := range all {
		if d.Key == "" {
			continue
		}
		v, _ := strconv.Atoi(string(d.Payload))
		if p, ok := last[d.Key]; ok && v < p {
			t.Fatalf("key %s: %d delivered after %d", d.Key, v, p)
		}
		last[d.Key] = v
	}
}

func testTraceContext(t *testing.T, h Harness) {
	tid := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(ctxFor(t), sc)
	tx, err := h.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Enqueue(ctx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var got atomic.Value
	rec := &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
		got.Store(trace.SpanContextFromContext(ctx).TraceID())
		return nil
	}}
	startRelay(t, h, rec)
	rec.WaitFor(t, waitLong, 1)
	if g := got.Load().(trace.TraceID); g != tid {
		t.Errorf("publish ran in trace %v, want the enqueuing trace %v", g, tid)
	}
}

func testStats(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	st, err := h.Store.Stats(ctx)
	if err != nil || st != (outbox.Stats{}) {
		t.Fatalf("empty Stats = %+v, %v", st, err)
	}
	commit(t, h, msgs("t", "", 4, "x")...)
	time.Sleep(5 * time.Millisecond)
	st, err = h.Store.Stats(ctx)
	if err != nil || st.Pending != 4 || st.OldestPendingAge <= 0 {
		t.Errorf("Stats = %+v, %v; want 4 pending with an age", st, err)
	}
}

// testRequeueToTail: a requeued dead letter keeps its id and takes a new
// position at the tail of its key, as if enqueued now: with the key idle it
// is delivered after the messages that passed it; with a later message of
// its key in flight it waits for it, so two messages of one key are never in
// flight at once.
func testRequeueToTail(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	deadLetter := func(key string) claimed {
		t.Helper()
		commit(t, h, outbox.Message{Topic: "t", Key: key, Payload: []byte("first")}, outbox.Message{Topic: "t", Key: key, Payload: []byte("second")})
		c := claimAll(t, h, time.Minute)
		if len(c) != 1 || string(c[0].Payload) != "first" {
			t.Fatalf("claimed %d messages, want the head of %s", len(c), key)
		}
		if n := settle(t, h, backend.Dead, c[0]); n != 0 {
			t.Fatal("settle refused")
		}
		return c[0]
	}

	// The key idle: its second message was delivered since.
	idle := deadLetter("idle")
	second := claimAll(t, h, time.Minute)
	if len(second) != 1 || string(second[0].Payload) != "second" {
		t.Fatalf("claimed %d, want the second message of the key", len(second))
	}
	settle(t, h, backend.Delivered, second[0])
	if n, err := h.Store.Requeue(ctx, idle.ID); err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	again := claimAll(t, h, time.Minute)
	if len(again) != 1 || again[0].ID != idle.ID || again[0].Attempt != 1 {
		t.Fatalf("after the requeue claimed %+v, want the requeued message (same id, attempts reset)", again)
	}
	if again[0].Position <= second[0].Position {
		t.Errorf("requeued message at position %d, want after %d (the tail of its key)", again[0].Position, second[0].Position)
	}
	settle(t, h, backend.Delivered, again...)

	// A later message of the key in flight: the requeued one waits for it.
	busy := deadLetter("busy")
	inFlight := claimAll(t, h, time.Minute)
	if len(inFlight) != 1 || string(inFlight[0].Payload) != "second" {
		t.Fatalf("claimed %d, want the second message of the key", len(inFlight))
	}
	if n, err := h.Store.Requeue(ctx, busy.ID); err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	if c := claimAll(t, h, time.Minute); len(c) != 0 {
		t.Fatalf("claimed %s (%s) while the key's later message is in flight: two of one key in flight", c[0].ID, c[0].Payload)
	}
	r, err := h.Store.Get(ctx, busy.ID)
	if err != nil || r.State != outbox.StatePending || r.Position <= inFlight[0].Position {
		t.Errorf("requeued message: %+v, %v; want pending after position %d", r, err, inFlight[0].Position)
	}
	settle(t, h, backend.Delivered, inFlight[0])
	last := claimAll(t, h, time.Minute)
	if len(last) != 1 || last[0].ID != busy.ID || last[0].Position != r.Position {
		t.Fatalf("after the key's message in flight was delivered, claimed %+v; want the requeued one", last)
	}
}

// abandon claims the message of payload (the only ready one) n times, each
// time letting the lease expire without an outcome, as a relay that dies
// while it holds the message would.
func abandon(t *testing.T, h Harness, n int) {
	t.Helper()
	const lease = 50 * time.Millisecond
	for i := range n {
		var c []claimed
		for deadline := time.Now().Add(waitLong); len(c) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("claim %d: the message never became claimable", i+1)
			}
			c = claimAll(t, h, lease)
		}
		if len(c) != 1 || c[0].Attempt != 1 || c[0].Abandoned != i {
			t.Fatalf("claim %d: %d messages, attempt %d, abandoned %d; want the message at attempt 1 with %d abandoned claims",
				i+1, len(c), c[0].Attempt, c[0].Abandoned, i)
		}
	}
	time.Sleep(lease)
}

// testAbandonedClaims: claims that end without an outcome (the relay died)
// spend no delivery attempt, so a message abandoned five times under a
// maximum of 3 attempts is still delivered; they are counted apart, and a
// message abandoned WithMaxAbandoned times (one that kills its relay each
// time) is dead-lettered unpublished with that reason instead of looping
// forever.
func testAbandonedClaims(t *testing.T, h Harness) {
	commit(t, h, outbox.Message{Topic: "t", Payload: []byte("survivor")})
	abandon(t, h, 5)
	rec := &Recorder{}
	r := startRelay(t, h, rec, outbox.WithMaxAttempts(3), outbox.WithMaxAbandoned(10))
	rec.WaitFor(t, waitLong, 1)
	stop(t, r)
	d := rec.Delivered()[0]
	if d.Attempt != 1 {
		t.Errorf("delivered at attempt %d, want 1: abandoned claims are no attempts", d.Attempt)
	}
	if got, err := h.Store.Get(ctxFor(t), d.ID); h.DeletesDelivered {
		if !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("after delivery: %+v, %v; want it gone as delivered", got, err)
		}
	} else if err != nil || got.State != outbox.StateDelivered || got.Attempts != 1 {
		t.Errorf("after delivery: %+v, %v; want delivered after 1 attempt", got, err)
	}

	commit(t, h, outbox.Message{ID: "0190d8a2-0000-7000-8000-0000000000ab", Topic: "t", Payload: []byte("killer")})
	abandon(t, h, 3)
	rec = &Recorder{}
	r = startRelay(t, h, rec, outbox.WithMaxAbandoned(3))
	var got outbox.Record
	for deadline := time.Now().Add(waitLong); got.State != outbox.StateDead; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the message abandoned 3 times is %v, want dead", got.State)
		}
		var err error
		if got, err = h.Store.Get(ctxFor(t), "0190d8a2-0000-7000-8000-0000000000ab"); err != nil {
			t.Fatal(err)
		}
	}
	stop(t, r)
	if n := len(rec.Calls()); n != 0 {
		t.Errorf("the message abandoned 3 times was published %d times", n)
	}
	if got.Attempts != 0 || !strings.Contains(got.LastError, "abandoned 3 times") {
		t.Errorf("dead letter: attempts %d, reason %q; want 0 attempts and the abandoned claims as the reason", got.Attempts, got.LastError)
	}
}

// testPauseRecorded: an outcome of kind Pause records the pause of the
// message's destination in the store: every claim skips the destination
// (in the claim itself, so nothing is claimed and released over and over),
// the paused messages keep their schedule and attempts, a shorter pause
// does not cut a longer one, and Resume lifts it at once.
func testPauseRecorded(t *testing.T, h Harness) {
	ctx := ctxFor(t)
	commit(t, h, msgs("t", "", 3, "a")...)
	for i := range 3 {
		commit(t, h, outbox.Message{Topic: "t", Destination: "b", Payload: []byte("b" + strconv.Itoa(i))})
	}
	c := claimAll(t, h, time.Minute)
	if len(c) != 6 {
		t.Fatalf("claimed %d, want 6", len(c))
	}
	var outs []backend.Outcome
	for i, x := range c {
		o := backend.Outcome{Position: x.Position, Token: x.Token, Kind: backend.Release}
		if i == 0 {
			o.Kind, o.Delay, o.Error = backend.Pause, time.Hour, "410 Gone"
		}
		outs = append(outs, o)
	}
	if refused, err := h.Store.Settle(ctx, outs); err != nil || len(refused) > 0 {
		t.Fatalf("Settle: %v, refused %v", err, refused)
	}
	again := claimAll(t, h, time.Minute)
	if len(again) != 3 {
		t.Fatalf("claimed %d after the pause, want the 3 messages of the other destination", len(again))
	}
	for _, x := range again {
		if x.Destination != "b" || x.Attempt != 1 || x.Abandoned != 0 {
			t.Errorf("claimed %s at attempt %d (%d abandoned), want destination b at attempt 1", x.Destination, x.Attempt, x.Abandoned)
		}
	}
	settle(t, h, backend.Delivered, again...)
	ps, err := h.Store.Pauses(ctx)
	if err != nil || len(ps) != 1 || ps[0].Destination != "t" || ps[0].Reason != "410 Gone" ||
		ps[0].Until.Before(time.Now().Add(50*time.Minute)) || ps[0].Until.After(time.Now().Add(70*time.Minute)) {
		t.Fatalf("Pauses = %+v, %v; want t for an hour, 410 Gone", ps, err)
	}
	r, err := h.Store.Get(ctx, c[0].ID)
	if err != nil || r.State != outbox.StatePending || r.Attempts != 0 || r.AvailableAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("the message that paused its destination: %+v, %v; want pending, no attempt spent, its schedule kept", r, err)
	}
	commit(t, h, outbox.Message{Topic: "other", Destination: "t"})
	if n, err := h.Store.Resume(ctx, "nobody"); err != nil || n != 0 {
		t.Errorf("Resume(a destination not paused) = %d, %v", n, err)
	}
	if n, err := h.Store.Resume(ctx, "t", "b"); err != nil || n != 1 {
		t.Fatalf("Resume = %d, %v; want 1", n, err)
	}
	if ps, err := h.Store.Pauses(ctx); err != nil || len(ps) != 0 {
		t.Errorf("Pauses after Resume = %+v, %v", ps, err)
	}
	lifted := claimAll(t, h, time.Minute)
	if len(lifted) != 4 {
		t.Fatalf("claimed %d after Resume, want the destination's 4 messages at once", len(lifted))
	}
	// A shorter pause does not shorten a longer one, nor replace its reason.
	outs = outs[:0]
	for i, x := range lifted {
		o := backend.Outcome{Position: x.Position, Token: x.Token, Kind: backend.Release}
		if i < 2 {
			o.Kind, o.Delay, o.Error = backend.Pause, time.Hour, "first"
			if i == 1 {
				o.Delay, o.Error = time.Second, "second"
			}
		}
		outs = append(outs, o)
	}
	if refused, err := h.Store.Settle(ctx, outs); err != nil || len(refused) > 0 {
		t.Fatalf("Settle: %v, refused %v", err, refused)
	}
	if ps, err := h.Store.Pauses(ctx); err != nil || len(ps) != 1 || ps[0].Until.Before(time.Now().Add(50*time.Minute)) || ps[0].Reason != "first" {
		t.Errorf("Pauses after a long and a short pause = %+v, %v; want the long one", ps, err)
	}
}

// testGoneForEveryRelay: two relays hold claimed messages of one
// destination when it answers 410 once: the pause is recorded where both
// see it, so no publish to the destination starts later than one poll
// interval after it was recorded (the relay that got the 410 stops at
// once); another destination is not delayed; after Resume every held
// message is delivered within a second, and none spent an attempt on the
// pause.
func testGoneForEveryRelay(t *testing.T, h Harness) {
	const poll = 200 * time.Millisecond
	const n = 40
	var batch []outbox.Message
	for i := range n {
		batch = append(batch, outbox.Message{Topic: "t", Destination: "gone", Payload: []byte("g" + strconv.Itoa(i))},
			outbox.Message{Topic: "t", Destination: "ok", Payload: []byte("o" + strconv.Itoa(i))})
	}
	commit(t, h, batch...)

	var (
		mu        sync.Mutex
		relays    = map[string]bool{} // relays that published to gone
		answered  bool                // gone answered its 410
		recovered bool                // gone works again (after Resume)
		starts    []time.Time         // publishes to gone started after the 410
		fails     = map[string]int{}  // 503s answered, by message
	)
	publisher := func(name string) *Recorder {
		return &Recorder{Fail: func(ctx context.Context, d outbox.Delivery) error {
			if d.Destination != "gone" {
				return nil
			}
			mu.Lock()
			if answered && !recovered {
				starts = append(starts, time.Now())
			}
			relays[name] = true
			gone := !answered && len(relays) == 2 // both relays hold messages of it
			answered = answered || gone
			ok := recovered
			mu.Unlock()
			switch {
			case gone:
				return outbox.Pause(errors.New("410 Gone"), time.Hour)
			case ok:
				return nil
			}
			select { // the endpoint is slow until it answers its 410
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
			mu.Lock()
			fails[d.ID]++
			mu.Unlock()
			return errors.New("503 Service Unavailable")
		}}
	}
	a, b := publisher("a"), publisher("b")
	opts := []outbox.Option{outbox.WithPollInterval(poll), outbox.WithBatchSize(10), outbox.WithDestinationConcurrency(4)}
	startRelay(t, h, a, opts...)
	startRelay(t, h, b, opts...)

	ctx := ctxFor(t)
	var recorded time.Time
	for deadline := time.Now().Add(waitLong); recorded.IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the 410 never paused the destination in the store")
		}
		ps, err := h.Store.Pauses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Destination == "gone" && strings.Contains(p.Reason, "410") {
				recorded = time.Now()
			}
		}
	}
	// Every message of the other destination flows meanwhile.
	for deadline := time.Now().Add(waitLong); ; time.Sleep(10 * time.Millisecond) {
		if len(ofDestination(a.Delivered(), "ok"))+len(ofDestination(b.Delivered(), "ok")) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the other destination's messages were not delivered while gone was paused")
		}
	}
	time.Sleep(2 * poll)
	mu.Lock()
	for _, s := range starts {
		if late := s.Sub(recorded); late > poll+raceSlowdown*100*time.Millisecond {
			t.Errorf("a publish to the paused destination started %v after the pause was recorded, later than one poll interval (%v)", late, poll)
		}
	}
	recovered = true
	mu.Unlock()

	resumed := time.Now()
	if n, err := h.Store.Resume(ctx, "gone"); err != nil || n != 1 {
		t.Fatalf("Resume = %d, %v", n, err)
	}
	for {
		got := len(ofDestination(a.Delivered(), "gone")) + len(ofDestination(b.Delivered(), "gone"))
		if got == n {
			break
		}
		if time.Since(resumed) > 5*time.Second {
			t.Fatalf("%d of %d held messages delivered 5s after Resume", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(resumed); took > raceSlowdown*time.Second {
		t.Errorf("the held messages were delivered %v after Resume, want within a second (%d under the race detector)", took, raceSlowdown)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range append(ofDestination(a.Delivered(), "gone"), ofDestination(b.Delivered(), "gone")...) {
		if d.Attempt != fails[d.ID]+1 { // its 503s were attempts; the pause was none
			t.Errorf("message %s delivered at attempt %d after %d failures: the pause spent attempts", d.Payload, d.Attempt, fails[d.ID])
		}
	}
}

func ofDestination(ds []outbox.Delivery, dest string) []outbox.Delivery {
	var out []outbox.Delivery
	for _, d := range ds {
		if d.Destination == dest {
			out = append(out, d)
		}
	}
	return out
}
