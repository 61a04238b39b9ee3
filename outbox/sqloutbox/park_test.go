package sqloutbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// TestPostgresOrphanParkRepaired: a message parked behind a predecessor
// that was claimed, published and settled before the message's own
// transaction committed (the settle could not see it, so did not unpark it)
// is made ready by the unpark sweep of the next claim that runs it.
func TestPostgresOrphanParkRepaired(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	commitMsgs := func(msgs ...outbox.Message) {
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
	claimSettle := func(want string) {
		t.Helper()
		c, err := claim(ctx, s, 10)
		if err != nil || len(c) != 1 || string(c[0].Payload) != want {
			t.Fatalf("claim = %d messages, %v; want only %s", len(c), err, want)
		}
		if refused, err := s.Settle(ctx, []backend.Outcome{{Position: c[0].Position, Token: c[0].Token, Kind: backend.Delivered}}); err != nil || len(refused) > 0 {
			t.Fatal(err, refused)
		}
	}
	commitMsgs(outbox.Message{Topic: "t", Key: "k", Payload: []byte("head")}, outbox.Message{Topic: "t", Key: "k", Payload: []byte("waiting")})
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// Parked: "waiting" is pending and unclaimed.
	if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: "k", Payload: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	claimSettle("head")
	claimSettle("waiting") // its settle cannot see "late" yet
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// A store that has not swept yet (as after unparkEvery) repairs it.
	fresh, err := sqloutbox.New(db, sqloutbox.Postgres, sqloutbox.WithTable(s.Table()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := claim(ctx, fresh, 10)
	if err != nil || len(c) != 1 || string(c[0].Payload) != "late" {
		t.Fatalf("after the sweep: claimed %d, %v; want the late message", len(c), err)
	}
}

// claimed is a message claimed directly from a store.
type claimed struct {
	outbox.Delivery
	backend.Claim
}

// claim claims up to limit messages for a minute.
func claim(ctx context.Context, s *sqloutbox.Store, limit int) ([]claimed, error) {
	var out []claimed
	err := s.Claim(ctx, backend.ClaimRequest{Limit: limit, Lease: time.Minute}, func(d outbox.Delivery, c backend.Claim) {
		out = append(out, claimed{d, c})
	})
	return out, err
}
