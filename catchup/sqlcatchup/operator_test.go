package sqlcatchup_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
)

func near(got, want, tolerance time.Duration) bool {
	d := got - want
	return d <= tolerance && d >= -tolerance
}

// cursorOf returns the Cursors entry of source.
func (e *env) cursorOf(source string) (catchup.Cursor, bool) {
	e.t.Helper()
	cs, err := e.store.Cursors(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cs {
		if c.Source == source {
			return c, true
		}
	}
	return catchup.Cursor{}, false
}

// TestCursors: per source, the cursor, the lease holder and what the lease
// has left (none once it ran out or was released), how long ago the cursor
// was stored, the lag from the newest event's creation time that Advance
// stored (never lowered), and the counts of failing events and dead
// letters; then the same figures from a running poller.
func TestCursors(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		s, ctx := e.store, context.Background()
		if cs, err := s.Cursors(ctx); err != nil || len(cs) != 0 {
			t.Fatalf("Cursors of an empty store = %v, %v", cs, err)
		}
		advance := func(source, owner, cursor string, newest time.Time) {
			t.Helper()
			tx, err := s.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Advance(ctx, tx, source, owner, cursor, newest, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		if _, held, err := s.Lease(ctx, "b", "o1", 10*time.Second); err != nil || !held {
			t.Fatal(held, err)
		}
		newest := time.Now().Add(-90 * time.Minute)
		advance("b", "o1", "evt_7", newest)
		advance("b", "o1", "evt_8", newest.Add(-time.Hour)) // an older one does not lower it
		ev := func(id string) catchup.Event { return catchup.Event{ID: id, Payload: []byte(`{}`)} }
		for _, id := range []string{"e1", "e2", "e3"} {
			if _, err := s.Fail(ctx, "b", ev(id), "boom"); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Bury(ctx, tx, "b", ev("e3"), "gave up", false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Bury(ctx, tx, "b", ev("e4"), "refused", true); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if _, held, err := s.Lease(ctx, "a", "o2", time.Minute); err != nil || !held {
			t.Fatal(held, err)
		}
		if err := s.Release(ctx, "a", "o2"); err != nil {
			t.Fatal(err)
		}
		if _, held, err := s.Lease(ctx, "c", "o3", 300*time.Millisecond); err != nil || !held {
			t.Fatal(held, err)
		}
		time.Sleep(400 * time.Millisecond)

		cs, err := s.Cursors(ctx)
		if err != nil || len(cs) != 3 || cs[0].Source != "a" || cs[1].Source != "b" || cs[2].Source != "c" {
			t.Fatalf("Cursors = %+v, %v", cs, err)
		}
		a, b, c := cs[0], cs[1], cs[2]
		if a.Owner != "" || a.LeaseLeft != 0 || a.Cursor != "" || a.Lag != 0 || a.Failing != 0 || a.DeadLetters != 0 {
			t.Errorf("released source: %+v", a)
		}
		if b.Owner != "o1" || !near(b.LeaseLeft, 9*time.Second, 1100*time.Millisecond) || b.Cursor != "evt_8" ||
			!near(b.SinceAdvance, time.Second, 1100*time.Millisecond) || !near(b.Lag, 90*time.Minute, time.Minute) ||
			b.Failing != 2 || b.DeadLetters != 2 {
			t.Errorf("leased source: %+v", b)
		}
		if c.Owner != "" || c.LeaseLeft != 0 {
			t.Errorf("source whose lease ran out: %+v", c)
		}

		// From a running poller: its lease, and the lag of the newest
		// event (created a day ago, a second apart).
		p := newProvider(t)
		ids := p.add(30)
		startPoller(t, e, newSource(t, p), "stripe", catchup.WithOverlapEvents(0))
		waitFor(t, 30*time.Second, "every event applied", func() bool { return e.effectTotal() == len(ids) })
		got, ok := e.cursorOf("stripe")
		wantLag := time.Since(epoch.Add(29 * time.Second))
		if !ok || got.Cursor != ids[29] || got.Owner == "" || got.LeaseLeft <= 0 || !near(got.Lag, wantLag, time.Minute) {
			t.Errorf("a running poller's cursor: %+v, want lag %v", got, wantLag)
		}
	})
}

// TestSetCursor: an operator sets a source's cursor before its first
// poller, forward past a backlog while a poller applies it (the page it was
// applying is rolled back, nothing after the new cursor is missed, nothing
// between is applied), and to Now (the backlog is skipped, later events are
// applied); invalid names and cursors are refused.
func TestSetCursor(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		slow := func(e *env) catchup.HandlerFunc {
			h := e.handler()
			return func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
				time.Sleep(4 * time.Millisecond) // a page of 50 takes about 200 ms
				return h(ctx, tx, ev)
			}
		}
		applied := func(e *env, ids []string) int {
			got, n := e.effectCounts(), 0
			for _, id := range ids {
				n += got[id]
			}
			return n
		}
		opts := []catchup.Option{catchup.WithOverlapEvents(0), catchup.WithLease(3 * time.Second)}
		// A provider's latency: SQLite has one writer at a time, and a
		// poller whose pages follow each other within a millisecond would
		// hold the write lock almost always, so that SetCursor waited for
		// the end of its pass (SQLite's busy handler retries at intervals
		// of up to 100 ms).
		latency := func(p *provider) {
			p.fault = func(http.ResponseWriter, *http.Request) bool {
				time.Sleep(20 * time.Millisecond)
				return false
			}
		}
		t.Run("before the first poller", func(t *testing.T) {
			e := newEnv(t, d)
			p := newProvider(t)
			ids := p.add(150)
			if err := e.store.SetCursor(ctx, "src", ids[99]); err != nil {
				t.Fatal(err)
			}
			startPoller(t, e, newSource(t, p), "src", opts...)
			waitFor(t, 30*time.Second, "the events after the cursor applied", func() bool { return e.effectTotal() == 50 })
			e.checkExactlyOnce(ids[100:])
		})
		t.Run("forward while polling", func(t *testing.T) {
			e := newEnv(t, d)
			p := newProvider(t)
			ids := p.add(400)
			latency(p)
			// On PostgreSQL and MariaDB the handler holds the third page
			// open (at its 21st event) until SetCursor has returned: that
			// page must then be rolled back. On SQLite an open page holds
			// the one write lock, so SetCursor waits for its commit instead.
			inFlight := d != steadfast.SQLite
			reached, gate := make(chan struct{}), make(chan struct{})
			h := slow(e)
			startPollerWith(t, e, newSource(t, p, catchup.WithPageSize("limit", 50)), "src",
				func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
					if inFlight && ev.ID == ids[120] {
						close(reached)
						<-gate
					}
					return h(ctx, tx, ev)
				}, opts...)
			if inFlight {
				<-reached
			} else {
				waitFor(t, 30*time.Second, "two pages applied", func() bool { return e.effectTotal() >= 60 })
			}
			start := time.Now()
			if err := e.store.SetCursor(ctx, "src", ids[299]); err != nil {
				t.Fatal(err)
			}
			close(gate)
			// From its return on, the poller reads after the new cursor: a
			// page it was applying had committed (PostgreSQL and MariaDB
			// wait for its row lock) or fails to advance and is rolled back.
			before := applied(e, ids[:300])
			t.Logf("SetCursor took %v; %d events applied then", time.Since(start), before)
			waitFor(t, 30*time.Second, "the events after the cursor applied", func() bool { return applied(e, ids[300:]) == 100 })
			if n := applied(e, ids[:300]); n != before || (inFlight && n != 100) {
				t.Errorf("%d events before the new cursor applied, %d were when it was set: the poller went on from its old cursor", n, before)
			}
			lists := p.lists.Load()
			waitFor(t, 30*time.Second, "two more passes", func() bool { return p.lists.Load() >= lists+2 })
			if c := e.cursor("src"); c != ids[399] {
				t.Errorf("cursor %s, want %s", c, ids[399])
			}
			got := e.effectCounts()
			for _, id := range ids {
				if got[id] > 1 {
					t.Errorf("%s applied %d times", id, got[id])
				}
			}
		})
		t.Run("now", func(t *testing.T) {
			e := newEnv(t, d)
			p := newProvider(t)
			ids := p.add(400)
			latency(p)
			var skipped atomic.Bool
			startPollerWith(t, e, newSource(t, p, catchup.WithPageSize("limit", 50)), "src", slow(e), opts...)
			waitFor(t, 30*time.Second, "two pages applied", func() bool { return e.effectTotal() >= 60 })
			start := time.Now()
			if err := e.store.SetCursor(ctx, "src", catchup.Now); err != nil {
				t.Fatal(err)
			}
			before := applied(e, ids)
			t.Logf("SetCursor took %v; %d events applied then", time.Since(start), before)
			waitFor(t, 30*time.Second, "the skip to the end", func() bool {
				c, _ := e.cursorOf("src")
				skipped.Store(c.Cursor == ids[399])
				return skipped.Load()
			})
			more := p.add(20)
			waitFor(t, 30*time.Second, "the later events applied", func() bool { return applied(e, more) == 20 })
			if n := applied(e, ids); n != before {
				t.Errorf("%d events of the backlog applied, %d were when Now was set", n, before)
			}
			e.checkExactlyOnce(append(e.appliedOf(ids), more...))
		})
		t.Run("now twice, idle", func(t *testing.T) {
			e := newEnv(t, d)
			for _, c := range []string{"evt_5", catchup.Now, catchup.Now} {
				if err := e.store.SetCursor(ctx, "idle", c); err != nil {
					t.Fatal(err)
				}
			}
			if c, _ := e.cursorOf("idle"); c.Cursor != catchup.Now+":evt_5" {
				t.Errorf("cursor %q after Now twice", c.Cursor)
			}
		})
		t.Run("refused", func(t *testing.T) {
			e := newEnv(t, d)
			for _, tt := range []struct{ source, cursor string }{
				{"", "x"}, {strings.Repeat("s", 256), "x"}, {"a\x00", "x"}, {"src", "a\x00b"}, {"src", "\xff"}, {"src", strings.Repeat("c", 8<<10+1)},
			} {
				if err := e.store.SetCursor(ctx, tt.source, tt.cursor); err == nil || !strings.HasPrefix(err.Error(), "sqlcatchup: SetCursor: ") {
					t.Errorf("SetCursor(%.20q, %.20q) = %v", tt.source, tt.cursor, err)
				}
			}
		})
	})
}

// appliedOf returns the ids of ids that have an effect.
func (e *env) appliedOf(ids []string) []string {
	got := e.effectCounts()
	var out []string
	for _, id := range ids {
		if got[id] > 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestPurgeFailing: records of failed attempts not updated for the
// retention go, in batches; fresh ones and dead letters (refused or not)
// stay, however old.
func TestPurgeFailing(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		s, ctx := e.store, context.Background()
		ev := func(id string) catchup.Event { return catchup.Event{ID: id, Payload: []byte(`{}`)} }
		for _, id := range []string{"e1", "e2", "e3", "e4"} {
			if _, err := s.Fail(ctx, "src", ev(id), "boom"); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := s.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Bury(ctx, tx, "src", ev("e4"), "gave up", false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Bury(ctx, tx, "src", ev("e5"), "refused", true); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		// Two hours old: e1, e2 (failing), e4, e5 (dead letters).
		if _, err := e.db.Exec("UPDATE " + e.prefix + "_failed SET updated_at = updated_at - 7200000000 WHERE event_id IN ('e1', 'e2', 'e4', 'e5')"); err != nil {
			t.Fatal(err)
		}
		for i, want := range []int64{1, 1, 0} {
			n, err := s.PurgeFailing(ctx, time.Hour, 1)
			if err != nil || n != want {
				t.Fatalf("PurgeFailing %d = %d, %v; want %d", i, n, err, want)
			}
		}
		if n := e.failingRows("src"); n != 1 {
			t.Errorf("%d records of failed attempts left, want the fresh one", n)
		}
		if dead, err := s.ListDead(ctx, "src", 0, 10); err != nil || len(dead) != 2 {
			t.Errorf("dead letters left: %d, %v", len(dead), err)
		}
		if _, err := s.PurgeFailing(ctx, 0, 10); err == nil {
			t.Error("a retention of 0 accepted")
		}
		if _, err := s.PurgeFailing(ctx, time.Hour, 0); err == nil {
			t.Error("a batch of 0 accepted")
		}
	})
}
