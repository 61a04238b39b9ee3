package sqlcatchup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/idempotency"
)

// strictInbox refuses, as an inbox with limits of its own would, the ids
// that start with "evt_strict".
type strictInbox struct{ catchup.Inbox }

func (s strictInbox) MarkProcessed(ctx context.Context, tx steadfast.Tx, consumer, id string) (bool, error) {
	if strings.HasPrefix(id, "evt_strict") {
		return false, fmt.Errorf("strict inbox: %w: no ids starting evt_strict", idempotency.ErrInvalid)
	}
	return s.Inbox.MarkProcessed(ctx, tx, consumer, id)
}

// TestRefusedEventsDeadLetteredAtOnce: events that no inbox could mark or
// no store could keep as they are (an id over 1,024 bytes or not printable,
// no id at all, an item that is not an object, a type over 255 bytes or not
// printable, an event over 1 MiB, an id the inbox itself refuses with
// idempotency.ErrInvalid) never stall the poller: each becomes a dead
// letter at once, on its first pass, with the reason; the handler never
// sees it; the cursor moves on, and the events after it are applied.
func TestRefusedEventsDeadLetteredAtOnce(t *testing.T) {
	long := "evt_" + strings.Repeat("x", 2000)
	bad := []struct {
		key, body, reason string
	}{
		{long, `{"id":"` + long + `","type":"t"}`, "value too large"},
		{"evt_nul\x00", `{"id":"evt_nul\u0000","type":"t"}`, "invalid input"},
		{"noid", `{"type":"no id"}`, "invalid input"},
		{"number", `42`, "invalid input"},
		{"evt_longtype", `{"id":"evt_longtype","type":"` + strings.Repeat("t", 300) + `"}`, "value too large"},
		{"evt_ctltype", `{"id":"evt_ctltype","type":"a\u0007b"}`, "invalid input"},
		{"evt_huge", `{"id":"evt_huge","pad":"` + strings.Repeat("x", 1<<20) + `"}`, "value too large"},
		{"evt_strict1", `{"id":"evt_strict1","type":"t"}`, "invalid input"},
	}
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		p := newProvider(t)
		var good, order []string
		for _, b := range bad {
			ids := p.add(7)
			good, order = append(good, ids...), append(order, ids...)
			p.addRaw(b.key, []byte(b.body))
			order = append(order, b.key)
		}
		ids := p.add(7)
		good, order = append(good, ids...), append(order, ids...)
		var (
			mu   sync.Mutex
			seen []string
		)
		h := e.handler()
		poller, err := catchup.NewPoller("src", newSource(t, p, catchup.WithPageSize("limit", 10)), e.store, strictInbox{e.inbox()},
			func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
				mu.Lock()
				seen = append(seen, ev.ID)
				mu.Unlock()
				return h(ctx, tx, ev)
			},
			catchup.WithLogger(quietLogger()), catchup.WithPollInterval(20*time.Millisecond), catchup.WithLease(10*time.Second),
			catchup.WithOverlapEvents(20), catchup.WithMaxAttempts(1000))
		if err != nil {
			t.Fatal(err)
		}
		if err := poller.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer stopPoller(t, poller)
		waitFor(t, 30*time.Second, "the events after the refused ones applied", func() bool { return e.effectCounts()[good[len(good)-1]] == 1 })
		e.checkExactlyOnce(good)
		if c, want := e.cursor("src"), order[len(order)-21]; c != want {
			t.Errorf("cursor %.40q, want %s, 20 events behind the last", c, want)
		}
		ctx := context.Background()
		dead, err := e.store.ListDead(ctx, "src", 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != len(bad) {
			t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
		}
		for i, dl := range dead {
			b := bad[i]
			if !strings.Contains(dl.LastError, b.reason) || dl.Source != "src" || dl.Attempts != 0 || !dl.Refused || dl.Requeued {
				t.Errorf("dead letter of %.30q: attempts %d, reason %q, want one matching %q", b.key, dl.Attempts, dl.LastError, b.reason)
			}
			if len(dl.ID) > 1024 || !utf8.ValidString(dl.ID) || strings.ContainsRune(dl.ID, 0) || dl.ID == "" {
				t.Errorf("dead letter of %.30q kept under the id %.40q", b.key, dl.ID)
			}
			if len(dl.Payload) > 1<<20 || !bytes.HasPrefix([]byte(b.body), dl.Payload) || len(dl.Payload) < min(len(b.body), 1<<20) {
				t.Errorf("dead letter of %.30q: payload of %d bytes, want the event's first MiB", b.key, len(dl.Payload))
			}
		}
		// Passes that read them again (the overlap window holds two) change
		// nothing; refused dead letters are not requeued (they would be
		// refused again), and are discarded.
		lists := p.lists.Load()
		waitFor(t, 30*time.Second, "three more passes", func() bool { return p.lists.Load() >= lists+3 })
		again, err := e.store.ListDead(ctx, "src", 0, 100)
		if err != nil || len(again) != len(dead) {
			t.Fatalf("dead letters after more passes: %d, %v", len(again), err)
		}
		for i := range again {
			if !again[i].UpdatedAt.Equal(dead[i].UpdatedAt) || again[i].LastError != dead[i].LastError {
				t.Errorf("dead letter %.30q written again by a later pass", again[i].ID)
			}
		}
		if n, err := e.store.Requeue(ctx, "src", dead[1].ID, dead[7].ID); err != nil || n != 0 {
			t.Errorf("Requeue of refused dead letters = %d, %v", n, err)
		}
		if n, err := e.store.Discard(ctx, "src", dead[1].ID); err != nil || n != 1 {
			t.Errorf("Discard of a refused dead letter = %d, %v", n, err)
		}
		isGood := map[string]bool{}
		for _, id := range good {
			isGood[id] = true
		}
		mu.Lock()
		for _, id := range seen {
			if !isGood[id] {
				t.Errorf("the handler saw the refused event %.30q", id)
			}
		}
		mu.Unlock()
	})
}

// TestFailureReasonsStored: a handler's error is kept as the reason of an
// attempt and of the dead letter whatever its bytes (a NUL, invalid UTF-8,
// 20 KB), so that the failing event does become a dead letter.
func TestFailureReasonsStored(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		p := newProvider(t)
		ids := p.add(20)
		h := e.handler()
		reason := "bad \x00 byte \xff and " + strings.Repeat("é", 10000)
		poller := startPollerWith(t, e, newSource(t, p), "src", func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
			if ev.ID == ids[5] {
				return errors.New(reason)
			}
			return h(ctx, tx, ev)
		}, catchup.WithMaxAttempts(2), catchup.WithOverlapEvents(0))
		_ = poller
		var dead []catchup.DeadLetter
		waitFor(t, 30*time.Second, "the failing event dead", func() bool {
			var err error
			dead, err = e.store.ListDead(context.Background(), "src", 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			return len(dead) == 1
		})
		if got := dead[0].LastError; !utf8.ValidString(got) || strings.ContainsRune(got, 0) || !strings.HasPrefix(got, "bad ") || len(got) > 4096 {
			t.Errorf("reason stored as %.60q (%d bytes)", got, len(got))
		}
		waitFor(t, 30*time.Second, "the other events applied", func() bool { return e.effectTotal() == len(ids)-1 })
	})
}

// startPollerWith starts a poller with handler fn (short interval, long
// lease, quiet) and stops it at the end of the test.
func startPollerWith(t testing.TB, e *env, src catchup.Source, source string, fn catchup.HandlerFunc, opts ...catchup.Option) *catchup.Poller {
	t.Helper()
	opts = append([]catchup.Option{catchup.WithLogger(quietLogger()), catchup.WithPollInterval(20 * time.Millisecond),
		catchup.WithLease(10 * time.Second)}, opts...)
	p, err := catchup.NewPoller(source, src, e.store, e.inbox(), fn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopPoller(t, p) })
	return p
}
