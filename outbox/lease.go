package outbox

import (
	"context"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/outbox/backend"
)

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
	end   time.Time   // when the lease runs out, never later than in the store
	held  []held      // the batch's messages, in batch order
	left  int         // how many of them are not done
	timer *time.Timer // fires at end: cuts the batch's publishes
}

// held is one message of a lease.
type held struct {
	pos      int64
	token    string
	done     bool               // its outcome is known: the lease no longer covers it
	lost     bool               // its lease ran out or a renewal was refused: not ours any more
	cancel   context.CancelFunc // set while it is being published
	deadline time.Time          // the end of its publish timeout, while it is being published
}

func newLease(batch []claimed, start, end time.Time) *lease {
	l := &lease{start: start, end: end, held: make([]held, len(batch)), left: len(batch)}
	for i := range batch {
		l.held[i] = held{pos: batch[i].Position, token: batch[i].Token}
		batch[i].lease, batch[i].held = l, &l.held[i]
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
	for i := range l.held {
		if !l.held[i].done {
			l.held[i].lose()
		}
	}
}

func (h *held) lose() {
	if h.lost {
		return
	}
	h.lost = true
	if h.cancel != nil {
		h.cancel()
	}
}

// begin marks h as being published under cancel until deadline, unless its
// lease is lost or has run out; it reports whether the publish may start.
func (l *lease) begin(h *held, cancel context.CancelFunc, deadline time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.lost || !time.Now().Before(l.end) {
		return false
	}
	h.cancel, h.deadline = cancel, deadline
	return true
}

// endPublish marks h as no longer being published and reports whether its
// lease was lost meanwhile (the publish was then cut off).
func (l *lease) endPublish(h *held) (lost bool) {
	l.mu.Lock()
	h.cancel, h.deadline = nil, time.Time{}
	lost = h.lost
	l.mu.Unlock()
	return lost
}

// renewable reports whether h's lease is worth renewing at now: it is still
// ours, and not in a publish past its timeout (a publisher that ignores its
// context loses the message when the lease runs out). l.mu is held.
func (h *held) renewable(now time.Time) bool {
	return !h.done && !h.lost && (h.deadline.IsZero() || now.Before(h.deadline))
}

// done marks h's outcome known and reports whether the lease holds nothing
// more.
func (l *lease) done(h *held) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h.done = true
	l.left--
	if l.left == 0 {
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
			for i := range l.held {
				if h := &l.held[i]; h.renewable(now) {
					outs = append(outs, backend.Outcome{Position: h.pos, Token: h.token, Kind: backend.Extend, Delay: r.cfg.lease})
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
		var lostPos map[int64]bool
		for _, p := range refused {
			if lostPos == nil {
				lostPos = make(map[int64]bool, len(refused))
			}
			lostPos[p] = true
		}
		if len(refused) > 0 {
			r.m.leaseLost.Add(ctx, int64(len(refused)))
			r.log.Warn("outbox: lease renewal refused: the messages were taken over", "refused", len(refused))
		}
		for _, l := range ls {
			l.mu.Lock()
			if len(lostPos) > 0 {
				for i := range l.held {
					if h := &l.held[i]; !h.done && lostPos[h.pos] {
						h.lose()
					}
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
