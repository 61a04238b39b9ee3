package ops

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
)

// maxBreakers bounds the breakers the page remembers (breaker names are
// hosts or destinations: a tenant can make many).
const maxBreakers = 500

// breakerBoard keeps the last state each breaker reported to this process.
type breakerBoard struct {
	mu   sync.Mutex
	rows map[string]*breakerRow
}

// breakerRow is one breaker as the page shows it.
type breakerRow struct {
	Name    string
	State   breaker.State
	Since   time.Time
	Shared  bool // the last change came from the shared state
	Changes int
}

// ObserveBreaker records a breaker's change of state, for the page's
// breaker table (this replica's view: where breaker.WithSync shares the
// state through Redis, a circuit held open by the other replicas shows as
// such). Give it to every breaker, group or transport to show:
//
//	breaker.NewTransport(next, breaker.WithStateHook(page.ObserveBreaker))
//
// Breakers that never changed state since the process started are closed
// and not listed. The page remembers at most 500 breakers, forgetting the
// longest-closed first. It never blocks.
func (p *Page) ObserveBreaker(t breaker.Transition) {
	b := &p.breakers
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rows == nil {
		b.rows = map[string]*breakerRow{}
	}
	row := b.rows[t.Name]
	if row == nil {
		if len(b.rows) >= maxBreakers {
			b.forgetOne()
		}
		row = &breakerRow{Name: t.Name}
		b.rows[t.Name] = row
	}
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	row.State, row.Since, row.Shared = t.To, at, t.Shared
	row.Changes++
}

// forgetOne drops the breaker closed for longest, or, when none is
// closed, the one whose last change is oldest.
func (b *breakerBoard) forgetOne() {
	var victim *breakerRow
	for _, r := range b.rows {
		switch {
		case victim == nil:
			victim = r
		case (r.State == breaker.Closed) != (victim.State == breaker.Closed):
			if r.State == breaker.Closed {
				victim = r
			}
		case r.Since.Before(victim.Since):
			victim = r
		}
	}
	if victim != nil {
		delete(b.rows, victim.Name)
	}
}

// snapshot returns the breakers, open ones first, then half-open, then
// closed, each by name.
func (b *breakerBoard) snapshot() []breakerRow {
	b.mu.Lock()
	out := make([]breakerRow, 0, len(b.rows))
	for _, r := range b.rows {
		out = append(out, *r)
	}
	b.mu.Unlock()
	rank := func(s breaker.State) int {
		switch s {
		case breaker.Open:
			return 0
		case breaker.HalfOpen:
			return 1
		}
		return 2
	}
	slices.SortFunc(out, func(x, y breakerRow) int {
		if c := cmp.Compare(rank(x.State), rank(y.State)); c != 0 {
			return c
		}
		return cmp.Compare(x.Name, y.Name)
	})
	return out
}
