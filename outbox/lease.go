package outbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/outbox/backend"
)

// errLeaseExpired is the cause of a publish cut off because its message's
// lease ran out before the relay could renew it: another relay may claim
// the message now, so this one must not go on.
var errLeaseExpired = errors.New("outbox: the message's lease ran out before it was renewed")

// The lease model. A claim leases its batch for the lease (WithLease),
// counted from before the claim was sent, so that this relay's idea of the
// end is never later than the store's. While any message of the batch is
// held (waiting for a publishing slot, or being published), the relay
// renews the lease every quarter lease for the messages whose lease has
// half or less left (but not for a publish past its publish timeout: a
// publisher that ignores its context loses its message to another relay); a
// message is published only while its lease runs, and its publish is cut
// off when the lease runs out unrenewed (the store unreachable, say). A relay that dies therefore leaves its messages to the
// others one lease after its last renewal, whatever the publish timeout,
// and a message delivered within a quarter lease is never renewed: the
// happy path writes nothing more.

// lease is the claim of one batch, as this relay knows it.
type lease struct {
	start time.Time // when the claim was sent

	mu    sync.Mutex
	end   time.Time       // when the lease runs out, never later than in the store
	held  map[int64]*held // the batch's messages not yet done, by position
	timer *time.Timer     // fires at end: cuts the batch's publishes
}

// held is one message of a lease.
type held struct {
	token    string
	lost     bool                    // its lease ran out or a renewal was refused: not ours any more
	cancel   context.CancelCauseFunc // set while it is being published
	deadline time.Time               // the end of its publish timeout, while it is being published
}

func newLease(batch []claimed, start, end time.Time) *lease {
	l := &lease{start: start, end: end, held: make(map[int64]*held, len(batch))}
	for i := range batch {
		h := &held{token: batch[i].Token}
		l.held[batch[i].Position] = h
		batch[i].lease, batch[i].held = l, h
	}
	l.timer = time.AfterFunc(time.Until(end), l.expire)
	return l
}

// expire runs when the lease's end is reached: unless it was renewed since,
// every message still held is lost and its publish is cut off.
func (l *lease) expire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := time.Until(l.end); d > 0 {
		l.timer.Reset(d)
		return
	}
	for _, h := range l.held {
		h.lose(errLeaseExpired)
	}
}

func (h *held) lose(cause error) {
	if h.lost {
		return
	}
	h.lost = true
	if h.cancel != nil {
		h.cancel(cause)
	}
}

// begin marks h as being published under cancel until deadline, unless its
// lease is lost or has run out; it reports whether the publish may start.
func (l *lease) begin(h *held, cancel context.CancelCauseFunc, deadline time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.lost || !time.Now().Before(l.end) {
		return false
	}
	h.cancel, h.deadline = cancel, deadline
	return true
}

// endPublish marks h as no longer being published.
func (l *lease) endPublish(h *held) {
	l.mu.Lock()
	h.cancel, h.deadline = nil, time.Time{}
	l.mu.Unlock()
}

// renewable reports whether h's lease is worth renewing at now: it is still
// ours, and not in a publish past its timeout (a publisher that ignores its
// context loses the message when the lease runs out). l.mu is held.
func (h *held) renewable(now time.Time) bool {
	return !h.lost && (h.deadline.IsZero() || now.Before(h.deadline))
}

// done removes the message at pos from the lease and reports whether the
// lease holds nothing more.
func (l *lease) done(pos int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.held, pos)
	if len(l.held) == 0 {
		l.timer.Stop()
		return true
	}
	return false
}

// track registers the lease of a claimed batch.
func (r *Relay) track(l *lease) {
	r.leaseMu.Lock()
	r.leases[l] = struct{}{}
	r.leaseMu.Unlock()
}

// untrack forgets a lease that holds nothing more.
func (r *Relay) untrack(l *lease) {
	r.leaseMu.Lock()
	delete(r.leases, l)
	r.leaseMu.Unlock()
}

// renewLoop renews, every quarter lease, the leases with half or less left,
// until ctx ends (after the last publish, at Stop).
func (r *Relay) renewLoop(ctx context.Context) {
	defer r.renewers.Done()
	t := time.NewTicker(max(r.cfg.lease/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.renew(ctx)
	}
}

func (r *Relay) renew(ctx context.Context) {
	now := time.Now()
	var outs []backend.Outcome
	var ls []*lease
	r.leaseMu.Lock()
	for l := range r.leases {
		l.mu.Lock()
		if l.end.Sub(now) <= r.cfg.lease/2 {
			n := len(outs)
			for pos, h := range l.held {
				if h.renewable(now) {
					outs = append(outs, backend.Outcome{Position: pos, Token: h.token, Kind: backend.Extend, Delay: r.cfg.lease})
				}
			}
			if len(outs) > n {
				ls = append(ls, l)
			}
		}
		l.mu.Unlock()
	}
	r.leaseMu.Unlock()
	for len(outs) > 0 {
		n := min(len(outs), maxSettle)
		start := time.Now()
		refused, err := r.store.Settle(ctx, outs[:n])
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("outbox: lease renewal failed; publishes are cut off when the leases run out", "messages", n, "err", err)
			}
			return
		}
		lostPos := make(map[int64]bool, len(refused))
		for _, p := range refused {
			lostPos[p] = true
		}
		if len(refused) > 0 {
			r.m.leaseLost.Add(ctx, int64(len(refused)))
			r.log.Warn("outbox: lease renewal refused: the messages were taken over", "refused", len(refused))
		}
		for _, l := range ls {
			l.mu.Lock()
			for _, o := range outs[:n] {
				if h, ok := l.held[o.Position]; ok && lostPos[o.Position] {
					h.lose(errLeaseExpired)
				}
			}
			if end := start.Add(r.cfg.lease); end.After(l.end) {
				l.end = end
			}
			l.mu.Unlock()
		}
		outs = outs[n:]
	}
}
