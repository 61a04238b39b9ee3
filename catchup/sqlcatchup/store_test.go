package sqlcatchup_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
)

// TestLease: one owner at a time holds a source's lease; it runs out on the
// database's clock; a lost lease makes Advance fail with ErrLeaseLost and
// change nothing; Release hands it over at once.
func TestLease(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		s, ctx := e.store, context.Background()
		const lease = 400 * time.Millisecond
		lease3 := func(owner string) (string, bool) {
			t.Helper()
			c, held, err := s.Lease(ctx, "src", owner, lease)
			if err != nil {
				t.Fatal(err)
			}
			return c, held
		}
		if c, held := lease3("a"); !held || c != "" {
			t.Fatalf("first lease: held %v, cursor %q", held, c)
		}
		if _, held := lease3("b"); held {
			t.Fatal("b took a live lease")
		}
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Advance(ctx, tx, "src", "a", "evt_10", time.Time{}, lease); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if c, held := lease3("a"); !held || c != "evt_10" {
			t.Fatalf("renewal: held %v, cursor %q", held, c)
		}
		time.Sleep(lease + 100*time.Millisecond)
		if c, held := lease3("b"); !held || c != "evt_10" {
			t.Fatalf("b after the lease ran out: held %v, cursor %q", held, c)
		}
		tx, err = s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Advance(ctx, tx, "src", "a", "evt_99", time.Time{}, lease); !errors.Is(err, catchup.ErrLeaseLost) {
			t.Errorf("Advance by the owner whose lease was taken: %v", err)
		}
		_ = tx.Rollback()
		if _, held := lease3("a"); held {
			t.Error("a took b's live lease")
		}
		if err := s.Release(ctx, "src", "a"); err != nil {
			t.Fatal(err)
		}
		if _, held := lease3("a"); held {
			t.Error("Release by a non-owner released the lease")
		}
		if err := s.Release(ctx, "src", "b"); err != nil {
			t.Fatal(err)
		}
		if c, held := lease3("a"); !held || c != "evt_10" {
			t.Errorf("after Release: held %v, cursor %q", held, c)
		}
		// Sources are independent.
		if _, held, err := s.Lease(ctx, "other", "b", lease); err != nil || !held {
			t.Errorf("another source: held %v, %v", held, err)
		}
	})
}

// TestFailures: attempts counted per event, dead letters listed in order,
// requeued, resolved and discarded.
func TestFailures(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		s, ctx := e.store, context.Background()
		ev := func(id string) catchup.Event {
			return catchup.Event{ID: id, Type: "t", Created: time.Unix(1_700_000_000, 0), Payload: []byte(`{"id":"` + id + `"}`), Cursor: "c_" + id}
		}
		for i, want := range []int{1, 2, 3} {
			n, err := s.Fail(ctx, "src", ev("e1"), "boom "+string(rune('a'+i)))
			if err != nil || n != want {
				t.Fatalf("Fail %d = %d, %v", i, n, err)
			}
		}
		if n, err := s.Fail(ctx, "other", ev("e1"), "x"); err != nil || n != 1 {
			t.Fatalf("another source's event: %d, %v", n, err)
		}
		bury := func(source, id string) {
			tx, err := s.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if buried, err := s.Bury(ctx, tx, source, ev(id), "gave up on "+id, false); err != nil || !buried {
				t.Fatalf("Bury = %v, %v", buried, err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		bury("src", "e1")
		bury("src", "e2")
		bury("other", "e1")
		if evs, err := s.Requeued(ctx, "src", 10); err != nil || len(evs) != 0 {
			t.Fatalf("Requeued before any requeue: %v, %v", evs, err)
		}
		dead, err := s.ListDead(ctx, "src", 0, 1)
		if err != nil || len(dead) != 1 {
			t.Fatalf("ListDead = %v, %v", dead, err)
		}
		d1 := dead[0]
		if d1.ID != "e1" || d1.Attempts != 3 || d1.LastError != "gave up on e1" || d1.Type != "t" || d1.Cursor != "c_e1" ||
			!d1.Created.Equal(time.Unix(1_700_000_000, 0)) || string(d1.Payload) != `{"id":"e1"}` || d1.Requeued || d1.UpdatedAt.IsZero() {
			t.Errorf("dead letter %+v", d1)
		}
		dead, err = s.ListDead(ctx, "src", d1.Position, 10)
		if err != nil || len(dead) != 1 || dead[0].ID != "e2" || dead[0].Attempts != 0 {
			t.Fatalf("ListDead after %d = %+v, %v", d1.Position, dead, err)
		}
		if all, err := s.ListDead(ctx, "", 0, 10); err != nil || len(all) != 3 {
			t.Fatalf("ListDead of every source = %d, %v", len(all), err)
		}
		if n, err := s.Requeue(ctx, "src", "e1", "e1", "nope"); err != nil || n != 1 {
			t.Fatalf("Requeue = %d, %v", n, err)
		}
		if n, err := s.Requeue(ctx, "src", "e1"); err != nil || n != 0 {
			t.Fatalf("Requeue of a requeued one = %d, %v", n, err)
		}
		evs, err := s.Requeued(ctx, "src", 10)
		if err != nil || len(evs) != 1 || evs[0].ID != "e1" || evs[0].Cursor != "c_e1" || string(evs[0].Payload) != `{"id":"e1"}` {
			t.Fatalf("Requeued = %+v, %v", evs, err)
		}
		dead, _ = s.ListDead(ctx, "src", 0, 10)
		if len(dead) != 2 || !dead[0].Requeued || dead[0].Attempts != 0 {
			t.Errorf("requeued dead letter listed as %+v", dead[0])
		}
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Resolve(ctx, tx, "src", "e1"); err != nil || !ok {
			t.Fatalf("Resolve = %v, %v", ok, err)
		}
		if ok, err := s.Resolve(ctx, tx, "src", "e2"); err != nil || ok {
			t.Fatalf("Resolve of a dead letter not requeued = %v, %v", ok, err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Discard(ctx, "src", "e2", "e1"); err != nil || n != 1 {
			t.Fatalf("Discard = %d, %v", n, err)
		}
		if dead, err := s.ListDead(ctx, "", 0, 10); err != nil || len(dead) != 1 || dead[0].Source != "other" {
			t.Errorf("left: %+v, %v", dead, err)
		}
		if n, err := s.Discard(ctx, "src"); err != nil || n != 0 {
			t.Errorf("Discard of nothing = %d, %v", n, err)
		}
		if _, err := s.ListDead(ctx, "", 0, 0); err == nil {
			t.Error("ListDead with limit 0 accepted")
		}
		if _, err := s.ListDead(ctx, "", 0, 1001); err == nil {
			t.Error("ListDead with limit 1001 accepted")
		}
	})
}

func TestSchema(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		// Migrate again: idempotent.
		if err := e.store.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		sch := e.store.Schema()
		if !strings.Contains(sch, "CREATE TABLE IF NOT EXISTS "+e.prefix+" (") || !strings.Contains(sch, e.prefix+"_failed") {
			t.Errorf("schema does not name the table:\n%s", sch)
		}
		if e.store.Table() != e.prefix {
			t.Errorf("Table() = %q", e.store.Table())
		}
	})
}
