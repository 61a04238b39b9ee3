package sqloutbox_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// commitMsgs enqueues msgs in a transaction of their own and commits it.
func commitMsgs(t testing.TB, db *sql.DB, s *sqloutbox.Store, msgs ...outbox.Message) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := s.Enqueue(context.Background(), tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// parkingStores runs fn on a fresh store of each database whose enqueue
// parks in the caller's transaction and whose orphans a sweep repairs.
func parkingStores(t *testing.T, fn func(t *testing.T, db *sql.DB, s *sqloutbox.Store)) {
	t.Run("postgres", func(t *testing.T) {
		db, s, _ := newPostgres(t)
		fn(t, db, s)
	})
	t.Run("mysql", func(t *testing.T) {
		db, s := newMySQL(t)
		fn(t, db, s)
	})
}

// TestOrphanParkRepaired: a message parked behind a predecessor that was
// claimed, published and settled before the message's own transaction
// committed (the settle could not see it, so did not unpark it) is made
// ready by the unpark sweep of the next claim that runs it.
func TestOrphanParkRepaired(t *testing.T) { parkingStores(t, testOrphanParkRepaired) }

func testOrphanParkRepaired(t *testing.T, db *sql.DB, s *sqloutbox.Store) {
	ctx := context.Background()
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
	commitMsgs(t, db, s, outbox.Message{Topic: "t", Key: "k", Payload: []byte("head")}, outbox.Message{Topic: "t", Key: "k", Payload: []byte("waiting")})
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
	fresh, err := sqloutbox.New(db, s.Dialect(), sqloutbox.WithTable(s.Table()))
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

// TestOrphanBehindClaimedHead: a message enqueued behind its key's head
// while the head is claimed is parked; when the head is settled before the
// message's transaction commits (so the settle cannot unpark it), the
// unpark sweep makes it ready. (MySQL did not park: the message was
// claimable at once, and every claim read past a key's waiting messages.)
func TestOrphanBehindClaimedHead(t *testing.T) { parkingStores(t, testOrphanBehindClaimedHead) }

func testOrphanBehindClaimedHead(t *testing.T, db *sql.DB, s *sqloutbox.Store) {
	ctx := context.Background()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: "k", Payload: []byte("head")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	head, err := claim(ctx, s, 10)
	if err != nil || len(head) != 1 {
		t.Fatalf("claimed %d, %v", len(head), err)
	}
	late, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback()
	if err := s.Enqueue(ctx, late, outbox.Message{Topic: "t", Key: "k", Payload: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	if refused, err := s.Settle(ctx, []backend.Outcome{{Position: head[0].Position, Token: head[0].Token, Kind: backend.Delivered}}); err != nil || len(refused) > 0 {
		t.Fatal(err, refused)
	}
	if err := late.Commit(); err != nil {
		t.Fatal(err)
	}
	if c, err := claim(ctx, s, 10); err != nil || len(c) != 0 {
		t.Fatalf("claimed %d, %v before the sweep: the late message was not parked", len(c), err)
	}
	if err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := claim(ctx, s, 10)
	if err != nil || len(c) != 1 || string(c[0].Payload) != "late" {
		t.Fatalf("after the sweep: claimed %d, %v; want the late message", len(c), err)
	}
}

// TestPostgresUnparkSweepBounded: one sweep looks at a bounded number of
// keys with parked messages (1,000), the next goes on from there, and they
// go round: the sweep's cost does not grow with the backlog, and every
// orphan is found.
func TestPostgresUnparkSweepBounded(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	// 2,500 orphans (parked, nothing before them), each behind... nothing;
	// and 2,500 keys whose parked message waits, rightly, behind a head.
	if _, err := db.ExecContext(ctx, `INSERT INTO `+s.Table()+` (id, topic, destination, partition_key, payload, available_at)
		SELECT gen_random_uuid(), 't', 't', 'k' || lpad(i::text, 5, '0'), '\x00', CASE WHEN i > 2500 AND j = 1 THEN now() ELSE 'infinity' END
		FROM generate_series(1, 5000) AS i, generate_series(1, CASE WHEN i > 2500 THEN 2 ELSE 1 END) AS j ORDER BY i, j`); err != nil {
		t.Fatal(err)
	}
	ready := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM ` + s.Table() + ` WHERE available_at <> 'infinity'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, want := range []int{2500 + 1000, 2500 + 2000, 2500 + 2500, 2500 + 2500} {
		if err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if got := ready(); got != want {
			t.Fatalf("after sweep %d: %d messages ready, want %d", i+1, got, want)
		}
	}
}

// TestKeyBacklogParked: every message queued behind its key's head is
// parked out of the ready range (its AvailableAt is far off), whether it
// came in the head's transaction or a later one, so that claims do not read
// past a deep per-key backlog; a message of another key, and the head, are
// ready. (MySQL did not park: every claim read past the waiting messages
// one by one, and the four-relays test, 200 messages deep on 50 keys, took
// 44 s there against 7 s now.)
func TestKeyBacklogParked(t *testing.T) {
	parkingStores(t, func(t *testing.T, db *sql.DB, s *sqloutbox.Store) {
		ctx := context.Background()
		var ids []string
		enqueue := func(key string, n int) {
			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			// One Enqueue a message: each sees the ones before it in the
			// same transaction, as a batch sees its own.
			for range n {
				id := uuid.NewString()
				ids = append(ids, id)
				if err := s.Enqueue(ctx, tx, outbox.Message{ID: id, Topic: "t", Key: key, Payload: []byte(id)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		enqueue("k", 50)
		enqueue("k", 50)
		enqueue("other", 1)
		soon := time.Now().Add(time.Hour)
		for i, id := range ids {
			r, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			ready := i == 0 || i == len(ids)-1
			if got := r.AvailableAt.Before(soon); got != ready {
				t.Fatalf("message %d of key %s: available at %v; want ready %v", i, r.Key, r.AvailableAt, ready)
			}
		}
	})
}
