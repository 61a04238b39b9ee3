package sqloutbox_test

import (
	"context"
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
// whose NotBefore is ahead.
func TestPostgresSettleClaimsTheNextOfAKey(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	commitMsgs := func(msgs ...outbox.Message) {
		t.Helper()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue(ctx, tx, msgs...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
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
	commitMsgs(
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
	commitMsgs(outbox.Message{Topic: "t", Key: "c", Payload: []byte("c1")},
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
}
