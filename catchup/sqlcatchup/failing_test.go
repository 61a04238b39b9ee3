package sqlcatchup_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
)

// failingRows counts the records of failed attempts (not dead letters) of
// source.
func (e *env) failingRows(source string) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(e.q("SELECT COUNT(*) FROM "+e.prefix+"_failed WHERE state = 0 AND source = ?"), source).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestFailedAttemptsForgottenWhenApplied: the record of an event's failed
// attempts goes when the event is applied after all: by the poller of a
// later process (the one that failed it was stopped), or by its webhook
// (the poller then reads it again as a duplicate). Without that, the
// records stayed forever.
func TestFailedAttemptsForgottenWhenApplied(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		p := newProvider(t)
		ids := p.add(40)
		h := e.handler()
		var failing atomic.Value // the id the handler fails, or ""
		failing.Store(ids[10])
		fn := func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
			if ev.ID == failing.Load().(string) {
				return errors.New("downstream unavailable")
			}
			return h(ctx, tx, ev)
		}
		opts := []catchup.Option{catchup.WithMaxAttempts(1000), catchup.WithOverlapEvents(3)}

		// 1. A later process applies it.
		first := startPollerWith(t, e, newSource(t, p), "src", fn, opts...)
		waitFor(t, 30*time.Second, "a failed attempt recorded", func() bool { return e.failingRows("src") == 1 })
		stopPoller(t, first)
		failing.Store("")
		startPollerWith(t, e, newSource(t, p), "src", fn, opts...)
		waitFor(t, 30*time.Second, "every event applied", func() bool { return e.effectTotal() == len(ids) })
		lists := p.lists.Load()
		waitFor(t, 30*time.Second, "two more passes", func() bool { return p.lists.Load() >= lists+2 })
		if n := e.failingRows("src"); n != 0 {
			t.Errorf("applied by a later process: %d records of failed attempts left", n)
		}

		// 2. Its webhook applies it.
		more := p.add(20)
		failing.Store(more[5])
		waitFor(t, 30*time.Second, "a failed attempt recorded", func() bool { return e.failingRows("src") == 1 })
		hook, err := catchup.NewPoller("src", newSource(t, p), e.store, e.inbox(), h, catchup.WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		deliver(t, hook.WebhookHandler(), p.body(more[5]))
		waitFor(t, 30*time.Second, "every event applied", func() bool { return e.effectTotal() == len(ids)+len(more) })
		lists = p.lists.Load()
		waitFor(t, 30*time.Second, "two more passes", func() bool { return p.lists.Load() >= lists+2 })
		if n := e.failingRows("src"); n != 0 {
			t.Errorf("applied by its webhook: %d records of failed attempts left", n)
		}
		e.checkExactlyOnce(append(ids, more...))
	})
}
