package sqloutbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
)

// TestPostgresSettleClaimsTheNextOfAKey: on PostgreSQL, the write-back that
// delivers (or dead-letters) a keyed message claims the next one of its key
// for the caller, under a lease and a token of its own, when it may be
// published now: no other claim can take it meanwhile, and its release
// makes it claimable again. A next message that is not to go now is made
// claimable instead (when its time comes): one of a paused destination, one
// whose NotBefore is ahead; and so is the next message of an outcome that
// yields its key (backend.Outcome.Yield), behind the messages already ready.
func TestPostgresSettleClaimsTheNextOfAKey(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	settle := func(kind backend.OutcomeKind, cs ...claimed) []claimed {
		t.Helper()
		outs := make([]backend.Outcome, len(cs))
		for i, c := range cs {
			outs[i] = backend.Outcome{Position: c.Position, Token: c.Token, Kind: kind, Delay: time.Minute, Error: "x"}
		}
		var next []claimed
		refused, err := s.SettleAndClaim(ctx, outs, time.Minute, func(d outbox.Delivery, c backend.Claim) { next = append(next, claimed{d, c}) })
		if err != nil || len(refused) > 0 {
			t.Fatal(refused, err)
		}
		return next
	}
	payloads := func(cs []claimed) (out []string) {
		for _, c := range cs {
			out = append(out, string(c.Payload))
		}
		return out
	}
	commitMsgs(t, db, s,
		outbox.Message{Topic: "t", Key: "a", Payload: []byte("a1")}, outbox.Message{Topic: "t", Key: "a", Payload: []byte("a2")},
		outbox.Message{Topic: "t", Key: "a", Payload: []byte("a3")},
		outbox.Message{Topic: "t", Key: "b", Payload: []byte("b1")}, outbox.Message{Topic: "t", Key: "b", Payload: []byte("b2")},
	)
	heads, err := claim(ctx, s, 10)
	if err != nil || len(heads) != 2 {
		t.Fatalf("claimed %v, %v; want the two heads", payloads(heads), err)
	}
	next := settle(backend.Delivered, heads[0]) // a1
	if got := payloads(next); len(got) != 1 || got[0] != "a2" || next[0].Token == "" || next[0].Token == heads[0].Token || next[0].Attempt != 1 {
		t.Fatalf("delivering a1 claimed %v (%+v); want a2 under a token of its own", got, next)
	}
	if more, err := claim(ctx, s, 10); err != nil || len(more) != 0 {
		t.Fatalf("a claim while a2 is held took %v, %v; want nothing (b1 is claimed, a2 held, the others behind them)", payloads(more), err)
	}
	if got := settle(backend.Release, next...); len(got) != 0 {
		t.Fatalf("releasing a2 claimed %v", payloads(got))
	}
	if again, err := claim(ctx, s, 10); err != nil || len(again) != 1 || string(again[0].Payload) != "a2" {
		t.Fatalf("after its release a claim took %v, %v; want a2", payloads(again), err)
	} else if got := settle(backend.Dead, again...); len(got) != 1 || string(got[0].Payload) != "a3" {
		t.Fatalf("dead-lettering a2 claimed %v; want a3", payloads(got))
	}

	// The next message of a paused destination is not claimed: it waits,
	// claimable, for the pause to end.
	if _, err := db.Exec("INSERT INTO " + s.Table() + "_pauses (destination, paused_until, reason, paused_at) VALUES ('t', now() + interval '1 hour', 'gone', now())"); err != nil {
		t.Fatal(err)
	}
	if got := settle(backend.Delivered, heads[1]); len(got) != 0 { // b1
		t.Fatalf("delivering b1 claimed %v; want nothing, its destination is paused", payloads(got))
	}
	if n, err := s.Resume(ctx, "t"); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	if got, err := claim(ctx, s, 10); err != nil || len(got) != 1 || string(got[0].Payload) != "b2" {
		t.Fatalf("after the pause a claim took %v, %v; want b2", payloads(got), err)
	}

	// A next message whose NotBefore is ahead waits for it.
	commitMsgs(t, db, s, outbox.Message{Topic: "t", Key: "c", Payload: []byte("c1")},
		outbox.Message{Topic: "t", Key: "c", Payload: []byte("c2"), NotBefore: time.Now().Add(time.Hour)})
	c, err := claim(ctx, s, 10)
	if err != nil || len(c) != 1 || string(c[0].Payload) != "c1" {
		t.Fatalf("claimed %v, %v; want c1", payloads(c), err)
	}
	if got := settle(backend.Delivered, c...); len(got) != 0 {
		t.Fatalf("delivering c1 claimed %v; want nothing before c2's NotBefore", payloads(got))
	}
	if r, err := s.Get(ctx, c[0].ID); err == nil {
		t.Fatalf("c1 is still there after its delivery: %+v", r)
	}

	// An outcome that yields its key leaves the next message to the
	// claims: ready, behind the messages already ready.
	commitMsgs(t, db, s, outbox.Message{Topic: "t", Key: "d", Payload: []byte("d1")},
		outbox.Message{Topic: "t", Key: "d", Payload: []byte("d2")}, outbox.Message{Topic: "t", Payload: []byte("e")})
	d, err := claim(ctx, s, 1)
	if err != nil || len(d) != 1 || string(d[0].Payload) != "d1" {
		t.Fatalf("claimed %v, %v; want d1", payloads(d), err)
	}
	var next2 []claimed
	refused, err := s.SettleAndClaim(ctx, []backend.Outcome{{Position: d[0].Position, Token: d[0].Token, Kind: backend.Delivered, Yield: true}},
		time.Minute, func(d outbox.Delivery, c backend.Claim) { next2 = append(next2, claimed{d, c}) })
	if err != nil || len(refused) > 0 || len(next2) != 0 {
		t.Fatalf("delivering d1 with Yield claimed %v (refused %v, %v); want nothing", payloads(next2), refused, err)
	}
	for _, want := range []string{"e", "d2"} {
		if got, err := claim(ctx, s, 1); err != nil || len(got) != 1 || string(got[0].Payload) != want {
			t.Fatalf("after d1 yielded a claim of one took %v, %v; want %s (e, then d2)", payloads(got), err, want)
		}
	}
}

// orderRecorder records what it publishes, in order.
type orderRecorder struct {
	mu  sync.Mutex
	got []string
}

func (p *orderRecorder) Publish(ctx context.Context, d outbox.Delivery) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, string(d.Payload))
	return nil
}

func (p *orderRecorder) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

// turn is outbox's maxTurn: the most messages of one key a relay publishes
// in a row.
const turn = 16

// roundRobin returns perKey messages of each of keys keys (k00, k01, ...),
// one of each key in turn; each payload names its key and its rank in it
// ("k01-3").
func roundRobin(keys, perKey int) []outbox.Message {
	msgs := make([]outbox.Message, 0, keys*perKey)
	for n := 1; n <= perKey; n++ {
		for k := range keys {
			msgs = append(msgs, outbox.Message{Topic: "t", Key: fmt.Sprintf("k%02d", k), Payload: []byte(fmt.Sprintf("k%02d-%d", k, n))})
		}
	}
	return msgs
}

// startOneAtATime starts a relay from s to pub that holds three messages
// at most (batches of one) and publishes one at a time.
func startOneAtATime(t *testing.T, s outbox.Store, pub outbox.Publisher) *outbox.Relay {
	t.Helper()
	r, err := outbox.NewRelay(s, pub, outbox.WithConcurrency(1), outbox.WithBatchSize(1), outbox.WithPollInterval(50*time.Millisecond),
		outbox.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPostgresFullRelayServesEveryKey: a relay that holds its fill of
// keyed messages does not keep its write-backs claiming the next messages
// of the keys it holds while the heads of other keys, older, wait: a full
// relay gives each key a turn of at most turn messages in a row (outbox's
// maxTurn), then leaves its next message to the claims, which take the
// oldest ready heads first. Thirty keys of turn+3 messages, committed
// round-robin, to a relay that holds three messages at most: every key's
// first message goes before any key's (turn+1)th, but for those the relay
// holds at the time.
func TestPostgresFullRelayServesEveryKey(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	const keys, perKey = 30, turn + 3
	commitMsgs(t, db, s, roundRobin(keys, perKey)...)
	pub := &orderRecorder{}
	r := startOneAtATime(t, s, pub)
	deadline := time.Now().Add(time.Minute)
	for len(pub.published()) < keys*perKey && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	got := pub.published()
	if len(got) < keys*perKey {
		t.Fatalf("published %d of %d in a minute", len(got), keys*perKey)
	}
	firsts := 0
	for i, p := range got {
		if strings.HasSuffix(p, "-1") {
			firsts++
		}
		// The relay publishes the messages it holds (three) in no set
		// order: the last two firsts may be claimed before and published
		// after a (turn+1)th.
		if strings.HasSuffix(p, fmt.Sprintf("-%d", turn+1)) && firsts < keys-2 {
			t.Fatalf("%s published %dth, when only %d of %d keys had their first message published (%v...)", p, i+1, firsts, keys, got[:i+1])
		}
	}
}

// TestPostgresLateKeyNotStarved: a key committed while a full relay works
// through deep keys it holds waits for their turns, not for their
// backlogs: every key's turn ends after turn messages, and the claim that
// takes the yielded key's next message takes the older late one first.
// Three keys of 60 messages to a relay that holds three messages at most
// (and publishes one at a time); the late key's message is committed once
// the relay has published a few, and goes before the held keys have
// published more than a turn each.
func TestPostgresLateKeyNotStarved(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	const keys, perKey = 3, 60
	commitMsgs(t, db, s, roundRobin(keys, perKey)...)
	pub := &orderRecorder{}
	r := startOneAtATime(t, s, pub)
	defer r.Stop(ctx) //nolint:errcheck // checked below
	deadline := time.Now().Add(time.Minute)
	for len(pub.published()) < 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	commitMsgs(t, db, s, outbox.Message{Topic: "t", Key: "late", Payload: []byte("late")})
	before := len(pub.published())
	for !slices.Contains(pub.published(), "late") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	got := pub.published()
	i := slices.Index(got, "late")
	if i < 0 {
		t.Fatalf("the late key's message was not published in a minute (%d published)", len(got))
	}
	// Each held key finishes its turn, then the next claim takes it.
	if waited := i - before; waited > keys*turn+keys {
		t.Fatalf("the late key's message waited for %d others (want at most %d): %v", waited, keys*turn+keys, got[before:i+1])
	}
}
