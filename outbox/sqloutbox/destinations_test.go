package sqloutbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

func TestPostgresStatsByDestination(t *testing.T) {
	_, s, _ := newPostgres(t)
	testStatsByDestination(t, s)
}

func TestSQLiteStatsByDestination(t *testing.T) {
	_, s := newSQLite(t)
	testStatsByDestination(t, s)
}

func TestMySQLStatsByDestination(t *testing.T) {
	_, s := newMySQL(t)
	testStatsByDestination(t, s)
}

// testStatsByDestination: orders/a has 3 messages (2 claimed for a minute,
// one of them then dead-lettered), orders/b 2 (one claimed with a lease that
// expires: not in flight), orders/c 1 (dead), refunds 1 without a
// destination (counted under its topic).
func testStatsByDestination(t *testing.T, s *sqloutbox.Store) {
	ctx := context.Background()
	enqueue := func(topic, dest string, n int) {
		t.Helper()
		for range n {
			if err := s.EnqueueWithoutTx(ctx, outbox.Message{Topic: topic, Destination: dest, Payload: []byte("{}")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue("orders", "a", 3)
	enqueue("orders", "b", 2)
	enqueue("orders", "c", 1)
	enqueue("refunds", "", 1)
	claimOnly := func(dest string, limit int, lease time.Duration) []claimed {
		t.Helper()
		var out []claimed
		var exclude []string
		for _, d := range []string{"a", "b", "c", "refunds"} {
			if d != dest {
				exclude = append(exclude, d)
			}
		}
		err := s.Claim(ctx, backend.ClaimRequest{Limit: limit, Lease: lease, Exclude: exclude}, func(d outbox.Delivery, c backend.Claim) {
			out = append(out, claimed{d, c})
		})
		if err != nil || len(out) != limit {
			t.Fatalf("claim %s: %d claimed, %v; want %d", dest, len(out), err, limit)
		}
		return out
	}
	dead := func(c claimed) {
		t.Helper()
		if refused, err := s.Settle(ctx, []backend.Outcome{{Position: c.Position, Token: c.Token, Kind: backend.Dead, Error: "boom"}}); err != nil || len(refused) > 0 {
			t.Fatalf("settle: refused %v, %v", refused, err)
		}
	}
	ca := claimOnly("a", 2, time.Minute)
	dead(ca[0])
	claimOnly("b", 1, time.Millisecond) // its lease expires at once
	dead(claimOnly("c", 1, time.Minute)[0])
	time.Sleep(50 * time.Millisecond)

	got, err := s.StatsByDestination(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []outbox.Stats{
		{Topic: "orders", Destination: "a", Pending: 2, InFlight: 1, Dead: 1},
		{Topic: "orders", Destination: "b", Pending: 2, InFlight: 0, Dead: 0},
		{Topic: "orders", Destination: "c", Pending: 0, InFlight: 0, Dead: 1},
		{Topic: "refunds", Destination: "refunds", Pending: 1, InFlight: 0, Dead: 0},
	}
	if len(got) != len(want) {
		t.Fatalf("StatsByDestination = %+v; want %d rows", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		age := g.OldestPendingAge
		g.OldestPendingAge = 0
		if g != w {
			t.Errorf("row %d = %+v; want %+v", i, got[i], w)
		}
		if w.Pending > 0 && (age <= 0 || age > time.Minute) {
			t.Errorf("row %d: oldest pending age %v; want a little above 0", i, age)
		}
		if w.Pending == 0 && age != 0 {
			t.Errorf("row %d: oldest pending age %v without pending messages; want 0", i, age)
		}
	}

	// The destination filter of dead letters.
	recs, err := s.ListDeadByDestination(ctx, "c", "", 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Destination != "c" || recs[0].State != outbox.StateDead || recs[0].LastError != "boom" {
		t.Fatalf("ListDeadByDestination(c) = %+v, %v; want c's dead letter", recs, err)
	}
	if recs, err := s.ListDeadByDestination(ctx, "c", "refunds", 0, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ListDeadByDestination(c, refunds) = %d, %v; want none", len(recs), err)
	}
	if recs, err := s.ListDeadByDestination(ctx, "a", "orders", 0, 10); err != nil || len(recs) != 1 || recs[0].ID != ca[0].ID {
		t.Fatalf("ListDeadByDestination(a, orders) = %+v, %v; want a's dead letter", recs, err)
	}
	if recs, err := s.ListDeadByDestination(ctx, "c", "", recs[0].Position, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ListDeadByDestination(c, after its position) = %d, %v; want none", len(recs), err)
	}
	if recs, err := s.ListDeadByDestination(ctx, "", "", 0, 10); err != nil || len(recs) != 2 {
		t.Fatalf("ListDeadByDestination(\"\") = %d, %v; want every dead letter (2)", len(recs), err)
	}
}
