package sqlcatchup_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/retry"
)

// TestRefetchOnGap: the gap-reporting guard on sqlstore's ordering guard
// reports a skipped version (and a first sight above version 1), enqueues a
// refetch in the event's transaction (none when it rolls back), and the
// relay's delivery to the Refetcher applies each entity's fetched state at
// its own version, once, after which late events are stale and later ones
// apply.
func TestRefetchOnGap(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		ctx := context.Background()
		out, err := sqloutbox.New(e.db, d, sqloutbox.WithTable(e.prefix+"_outbox"))
		if err != nil {
			t.Fatal(err)
		}
		if err := out.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if d != steadfast.SQLite {
			t.Cleanup(func() {
				for _, s := range []string{"", "_keys", "_pauses"} {
					_, _ = e.db.Exec("DROP TABLE IF EXISTS " + e.prefix + "_outbox" + s)
				}
			})
		}
		current := map[string]int64{"a": 9, "b": 7, "gone": 1}
		var (
			mu      sync.Mutex
			applied = map[string][]int64{}
		)
		fetch := func(ctx context.Context, entity string) (catchup.Object, error) {
			if entity == "gone" {
				return catchup.Object{}, retry.Permanent(errors.New("404"))
			}
			return catchup.Object{Version: current[entity], Payload: []byte(strconv.FormatInt(current[entity], 10))}, nil
		}
		r, err := catchup.NewRefetcher(e.db, e.idem, out, fetch, func(ctx context.Context, tx steadfast.Tx, entity string, obj catchup.Object) error {
			mu.Lock()
			applied[entity] = append(applied[entity], obj.Version)
			mu.Unlock()
			return nil
		}, catchup.WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			entity       string
			version      int64
			applied, gap bool
			rollback     bool
		}{
			{"a", 1, true, false, false},
			{"a", 2, true, false, false},
			{"a", 4, true, true, false}, // 3 skipped
			{"a", 3, false, false, false},
			{"a", 4, false, false, false},
			{"a", 5, true, false, false},
			{"b", 3, true, true, true}, // first seen above 1, rolled back: nothing enqueued
			{"b", 3, true, true, false},
			{"c", 1, true, false, false},
			{"gone", 2, true, true, false},
		}
		for _, s := range steps {
			tx, err := e.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, g, err := r.ApplyVersion(ctx, tx, s.entity, s.version)
			if err != nil {
				t.Fatal(err)
			}
			if a != s.applied || g != s.gap {
				t.Errorf("%s v%d: applied %v gap %v, want %v %v", s.entity, s.version, a, g, s.applied, s.gap)
			}
			if s.rollback {
				err = tx.Rollback()
			} else {
				err = tx.Commit()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		st, err := out.Stats(ctx)
		if err != nil || st.Pending != 3 {
			t.Fatalf("%d refetches pending, want 3 (a, b, gone): %v", st.Pending, err)
		}
		relay, err := outbox.NewRelay(out, r, outbox.WithPollInterval(20*time.Millisecond), outbox.WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		if err := relay.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the refetches done", func() bool {
			st, err := out.Stats(ctx)
			return err == nil && st.Pending == 0
		})
		if err := relay.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if len(applied) != 2 || len(applied["a"]) != 1 || applied["a"][0] != 9 || len(applied["b"]) != 1 || applied["b"][0] != 7 {
			t.Errorf("applied by refetch: %v, want a at 9 and b at 7, once each", applied)
		}
		mu.Unlock()
		if st, _ := out.Stats(ctx); st.Dead != 1 {
			t.Errorf("the refetch of an entity the provider no longer has is not a dead letter: %+v", st)
		}
		// After the refetch, the guard stands at the fetched version.
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		for _, s := range []struct {
			version      int64
			applied, gap bool
		}{{8, false, false}, {9, false, false}, {10, true, false}} {
			a, g, err := r.ApplyVersion(ctx, tx, "a", s.version)
			if err != nil || a != s.applied || g != s.gap {
				t.Errorf("a v%d after the refetch: applied %v gap %v (%v), want %v %v", s.version, a, g, err, s.applied, s.gap)
			}
		}
		// A delivery of another topic is refused as permanent.
		if err := r.Publish(ctx, outbox.Delivery{Message: outbox.Message{Topic: "invoices", Payload: []byte(`{"entity":"a"}`)}}); !retry.IsPermanent(err) {
			t.Errorf("another topic: %v", err)
		}
	})
}
