package sqlcatchup_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/retry"
)

var errPoison = errors.New("poison event")

func newSource(t testing.TB, p *provider, opts ...catchup.Option) *catchup.HTTPSource {
	t.Helper()
	src, err := catchup.NewHTTPSource(p.srv.Client(), p.url(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func startPoller(t testing.TB, e *env, src catchup.Source, source string, opts ...catchup.Option) *catchup.Poller {
	t.Helper()
	opts = append([]catchup.Option{catchup.WithLogger(quietLogger()), catchup.WithPollInterval(50 * time.Millisecond),
		catchup.WithLease(10 * time.Second)}, opts...)
	p, err := catchup.NewPoller(source, src, e.store, e.inbox(), e.handler(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopPoller(t, p) })
	return p
}

func stopPoller(t testing.TB, p *catchup.Poller) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func forDialects(t *testing.T, fn func(t *testing.T, d steadfast.Dialect)) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) { fn(t, d) })
	}
}

// TestEveryEventAppliedOnce: 10,000 events (1,000 under -short), 5% never
// delivered by webhook, the rest delivered one to three times, in a shuffled
// order, while the poller polls: once it caught up, every event was applied
// exactly once, by one path or the other.
func TestEveryEventAppliedOnce(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		n := 10000
		if testing.Short() {
			n = 1000
		}
		p := newProvider(t)
		ids := p.add(n)
		rng := rand.New(rand.NewPCG(uint64(n), 16))
		var deliveries [][]byte
		lost := 0
		for _, id := range ids {
			if rng.IntN(100) < 5 {
				lost++
				continue
			}
			for range 1 + rng.IntN(3) {
				deliveries = append(deliveries, p.body(id))
			}
		}
		rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })

		poller := startPoller(t, e, newSource(t, p), "stripe", catchup.WithOverlapEvents(50))
		stop := make(chan struct{})
		watch := e.watchCursor(t, p, "stripe", stop)
		hook := poller.WebhookHandler()
		var wg sync.WaitGroup
		ch := make(chan []byte)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := range ch {
					deliver(t, hook, b)
				}
			}()
		}
		for _, b := range deliveries {
			ch <- b
		}
		close(ch)
		wg.Wait()
		waitFor(t, 3*time.Minute, "every event applied", func() bool { return e.effectTotal() >= n })
		// A few more passes: nothing more may be applied.
		lists := p.lists.Load()
		waitFor(t, time.Minute, "three more passes", func() bool { return p.lists.Load() >= lists+3 })
		close(stop)
		watch.Wait()
		e.checkExactlyOnce(ids)
		var byPoll int
		if err := e.db.QueryRow("SELECT COUNT(*) FROM " + e.effects + " WHERE via = 'poll'").Scan(&byPoll); err != nil {
			t.Fatal(err)
		}
		if byPoll < lost {
			t.Errorf("the poller applied %d events, fewer than the %d never delivered", byPoll, lost)
		}
		t.Logf("%d events, %d never delivered, %d webhook deliveries; %d applied by the poller", n, lost, len(deliveries), byPoll)
	})
}

// TestLateEventsWithinOverlap: events that appear in the list late, after
// later ones (within the overlap window), are applied; with no overlap
// they would be missed (the control).
func TestLateEventsWithinOverlap(t *testing.T) {
	cases := []struct {
		name   string
		opt    catchup.Option
		missed bool
	}{
		{"by count", catchup.WithOverlapEvents(40), false},
		{"by time", catchup.WithOverlap(40 * time.Second), false}, // events are a second apart
		{"none (control)", catchup.WithOverlapEvents(0), true},
	}
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, d)
				p := newProvider(t)
				var all []string
				for wave := range 3 {
					ids := p.add(100)
					all = append(all, ids...)
					// Ten events among the last 30 of the wave are listed late.
					late := ids[70:100:100]
					hidden := []string{}
					for i := 0; i < len(late); i += 3 {
						hidden = append(hidden, late[i])
					}
					p.setVisible(false, hidden...)
					if wave == 0 {
						startPoller(t, e, newSource(t, p), "src", tc.opt)
					}
					waitFor(t, time.Minute, "the wave applied", func() bool { return e.effectCounts()[ids[99]] == 1 })
					p.setVisible(true, hidden...)
				}
				if tc.missed {
					lists := p.lists.Load()
					waitFor(t, time.Minute, "three more passes", func() bool { return p.lists.Load() >= lists+3 })
					got := e.effectCounts()
					if len(got) == len(all) {
						t.Fatal("no late event was missed without an overlap: the test shows nothing")
					}
					t.Logf("without overlap, %d of %d events were missed", len(all)-len(got), len(all))
					return
				}
				waitFor(t, time.Minute, "every event applied", func() bool { return e.effectTotal() >= len(all) })
				e.checkExactlyOnce(all)
				// The cursor trails by the window, no more.
				if c, want := e.cursor("src"), all[len(all)-41]; c != want {
					t.Errorf("cursor %s, want %s (40 behind the newest)", c, want)
				}
			})
		}
	})
}

// TestProviderErrorsKeepTheCursor: the provider answers 500, then 429 with
// Retry-After, for a while: the cursor never moves past an event not
// applied, the poller waits the delay asked for, then resumes and applies
// everything once.
func TestProviderErrorsKeepTheCursor(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		p := newProvider(t)
		ids := p.add(300)
		var (
			mu                  sync.Mutex
			fails               int
			last429             time.Time
			after429            time.Time
			cursorDuringOutage  = map[string]bool{}
			outageBegunAfter100 bool
		)
		p.fault = func(w http.ResponseWriter, r *http.Request) bool {
			mu.Lock()
			defer mu.Unlock()
			if r.URL.Query().Get("starting_after") < eventID(150) && fails == 0 {
				return false // the first half goes through
			}
			outageBegunAfter100 = true
			if fails < 9 {
				cursorDuringOutage[e.cursor("src")] = true
			}
			switch {
			case fails < 6:
				fails++
				http.Error(w, "boom", http.StatusInternalServerError)
				return true
			case fails < 9:
				fails++
				last429 = time.Now()
				w.Header().Set("Retry-After", "1")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return true
			}
			if after429.IsZero() {
				after429 = time.Now()
			}
			return false
		}
		pol, err := retry.New(retry.WithMaxAttempts(2), retry.WithBackoff(5*time.Millisecond, 20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		watch := e.watchCursor(t, p, "src", stop)
		startPoller(t, e, newSource(t, p, catchup.WithPageSize("limit", 50)), "src",
			catchup.WithOverlapEvents(10), catchup.WithRetry(pol))
		waitFor(t, time.Minute, "every event applied", func() bool { return e.effectTotal() >= len(ids) })
		close(stop)
		watch.Wait()
		e.checkExactlyOnce(ids)
		mu.Lock()
		defer mu.Unlock()
		if !outageBegunAfter100 || fails != 9 {
			t.Fatalf("the outage did not play out: %d failures", fails)
		}
		if len(cursorDuringOutage) != 1 {
			t.Errorf("the cursor moved during the outage: %v", cursorDuringOutage)
		}
		if wait := after429.Sub(last429); wait < 900*time.Millisecond {
			t.Errorf("the poller came back %v after a 429 with Retry-After: 1", wait)
		}
	})
}

// TestDeadLetters: an event whose handler keeps failing becomes a dead
// letter after the maximum of attempts and the cursor moves past it; a
// webhook of it is then skipped; requeued, it is applied once; a discarded
// one never is.
func TestDeadLetters(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		p := newProvider(t)
		ids := p.add(200)
		poison := map[string]bool{ids[50]: true, ids[120]: true}
		var mu sync.Mutex
		calls := map[string]int{}
		h := e.handler()
		poller, err := catchup.NewPoller("src", newSource(t, p), e.store, e.inbox(),
			func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
				mu.Lock()
				calls[ev.ID]++
				bad := poison[ev.ID]
				mu.Unlock()
				if bad {
					return errPoison
				}
				return h(ctx, tx, ev)
			},
			catchup.WithLogger(quietLogger()), catchup.WithPollInterval(20*time.Millisecond), catchup.WithLease(10*time.Second),
			catchup.WithOverlapEvents(5), catchup.WithMaxAttempts(3))
		if err != nil {
			t.Fatal(err)
		}
		if err := poller.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer stopPoller(t, poller)
		waitFor(t, time.Minute, "the healthy events applied", func() bool { return e.effectTotal() >= len(ids)-2 })
		ctx := context.Background()
		var dead []catchup.DeadLetter
		waitFor(t, time.Minute, "two dead letters", func() bool {
			dead, err = e.store.ListDead(ctx, "src", 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			return len(dead) == 2
		})
		for _, dl := range dead {
			if !poison[dl.ID] || dl.Attempts != 3 || dl.LastError != errPoison.Error() || dl.Source != "src" || string(dl.Payload) != string(p.body(dl.ID)) {
				t.Errorf("dead letter %+v", dl)
			}
		}
		mu.Lock()
		if calls[ids[50]] != 3 {
			t.Errorf("the poison event was tried %d times, want 3", calls[ids[50]])
		}
		mu.Unlock()
		// Its webhook is skipped now: it is settled as a dead letter.
		deliver(t, poller.WebhookHandler(), p.body(ids[50]))
		// Requeue one (now healthy), discard the other.
		mu.Lock()
		delete(poison, ids[50])
		mu.Unlock()
		if n, err := e.store.Requeue(ctx, "src", ids[50], "evt_nope"); err != nil || n != 1 {
			t.Fatalf("Requeue = %d, %v", n, err)
		}
		if n, err := e.store.Discard(ctx, "src", ids[120]); err != nil || n != 1 {
			t.Fatalf("Discard = %d, %v", n, err)
		}
		waitFor(t, time.Minute, "the requeued event applied", func() bool { return e.effectCounts()[ids[50]] == 1 })
		waitFor(t, time.Minute, "no dead letter left", func() bool {
			dead, err = e.store.ListDead(ctx, "", 0, 10)
			return err == nil && len(dead) == 0
		})
		var want []string
		for _, id := range ids {
			if id != ids[120] {
				want = append(want, id)
			}
		}
		e.checkExactlyOnce(want)
	})
}
