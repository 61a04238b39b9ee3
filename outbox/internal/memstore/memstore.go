// Package memstore is an outbox.Store in memory, on the process's clock,
// for the tests of the relay and of the publishers: inside a
// testing/synctest bubble its leases, backoffs and pauses follow the
// bubble's fake clock, which the SQL stores (whose time is the database's)
// cannot. It passes the conformance suite of outbox/outboxtest. It is not
// durable and holds everything in one lock: never use it in production.
package memstore

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/internal/message"
)

// maxPayload is the largest payload Enqueue accepts, as the SQL stores'
// default.
const maxPayload = 1 << 20

// Store is an outbox in memory. It admits one write transaction at a time
// (Begin waits for the previous one to end), like SQLite.
type Store struct {
	writer chan struct{} // held by the open transaction

	mu     sync.Mutex
	seq    int64
	rows   map[int64]*row
	ids    map[string]int64
	pauses map[string]outbox.PausedDestination
}

type row struct {
	msg         outbox.Message
	pos         int64
	traceParent string
	createdAt   time.Time
	availableAt time.Time // zero: parked behind its key's head
	state       outbox.State
	attempts    int // outcomes of publishes
	claims      int // claims not given back
	claimed     int // claims made, given back or not
	token       string
	lastError   string
	doneAt      time.Time
}

var _ outbox.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{writer: make(chan struct{}, 1), rows: map[int64]*row{}, ids: map[string]int64{}, pauses: map[string]outbox.PausedDestination{}}
}

// Tx is a write transaction: its messages are stored when it commits.
type Tx struct {
	s    *Store
	msgs []outbox.Message
	tp   []string
	done bool
}

// Begin waits until no other transaction is open (or ctx ends) and opens
// one.
func (s *Store) Begin(ctx context.Context) (*Tx, error) {
	select {
	case s.writer <- struct{}{}:
		return &Tx{s: s}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Enqueue validates msgs as every store does and adds them to the
// transaction.
func (t *Tx) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	ms, _, err := message.Prepare(msgs, maxPayload)
	if err != nil {
		return err
	}
	tp := message.TraceParent(ctx)
	for _, m := range ms {
		t.msgs = append(t.msgs, m)
		t.tp = append(t.tp, tp)
	}
	return nil
}

// Commit stores the transaction's messages, in order.
func (t *Tx) Commit() error {
	if t.done {
		return nil
	}
	t.done = true
	s := t.s
	s.mu.Lock()
	now := time.Now()
	for i, m := range t.msgs {
		if m.Headers != nil {
			m.Headers = cloneMap(m.Headers)
		}
		m.Payload = slices.Clone(m.Payload)
		s.seq++
		r := &row{msg: m, pos: s.seq, traceParent: t.tp[i], createdAt: now, availableAt: cmp.Or(m.NotBefore, now)}
		if m.Key != "" && s.pendingBefore(m.Key, r.pos) {
			r.availableAt = time.Time{}
		}
		s.rows[r.pos] = r
		s.ids[m.ID] = r.pos
	}
	s.mu.Unlock()
	<-s.writer
	return nil
}

// Rollback drops the transaction's messages.
func (t *Tx) Rollback() error {
	if t.done {
		return nil
	}
	t.done = true
	<-t.s.writer
	return nil
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pendingBefore reports whether a pending message of key has a position
// below pos. s.mu is held.
func (s *Store) pendingBefore(key string, pos int64) bool {
	for _, r := range s.rows {
		if r.msg.Key == key && r.state == outbox.StatePending && r.pos < pos {
			return true
		}
	}
	return false
}

// Claim implements outbox.Store.
func (s *Store) Claim(ctx context.Context, req backend.ClaimRequest, claimed func(outbox.Delivery, backend.Claim)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	now := time.Now()
	var ready []*row
	for _, r := range s.rows {
		if r.state != outbox.StatePending || r.availableAt.IsZero() || r.availableAt.After(now) ||
			slices.Contains(req.Exclude, r.msg.Destination) || s.pauses[r.msg.Destination].Until.After(now) ||
			(r.msg.Key != "" && s.pendingBefore(r.msg.Key, r.pos)) {
			continue
		}
		ready = append(ready, r)
	}
	slices.SortFunc(ready, func(a, b *row) int {
		return cmp.Or(a.availableAt.Compare(b.availableAt), cmp.Compare(a.pos, b.pos))
	})
	ready = ready[:min(len(ready), req.Limit)]
	slices.SortFunc(ready, func(a, b *row) int { return cmp.Compare(a.pos, b.pos) })
	token := uuid.NewString()
	type out struct {
		d outbox.Delivery
		c backend.Claim
	}
	outs := make([]out, len(ready))
	for i, r := range ready {
		r.token = token
		r.availableAt = now.Add(req.Lease)
		r.claims++
		r.claimed++
		m := r.msg
		if m.Headers != nil {
			m.Headers = cloneMap(m.Headers)
		}
		outs[i] = out{
			d: outbox.Delivery{Message: m, Attempt: r.attempts + 1, CreatedAt: r.createdAt, Position: r.pos},
			c: backend.Claim{Token: token, TraceParent: r.traceParent, Abandoned: r.claims - 1 - r.attempts},
		}
		if reason := message.Check(m); reason != "" {
			outs[i].c.Malformed = errString(reason)
		}
	}
	s.mu.Unlock()
	for _, o := range outs {
		claimed(o.d, o.c)
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// Settle implements outbox.Store.
func (s *Store) Settle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var refused []int64
	for _, o := range outcomes {
		r := s.rows[o.Position]
		if r == nil || r.state != outbox.StatePending || r.token == "" || r.token != o.Token {
			refused = append(refused, o.Position)
			continue
		}
		if o.Error != "" {
			r.lastError = o.Error
		}
		switch o.Kind {
		case backend.Delivered, backend.Retry, backend.Dead:
			r.attempts++
		case backend.DeadUnsent, backend.Release, backend.Pause:
			r.claims--
		}
		switch o.Kind {
		case backend.Delivered:
			r.state, r.doneAt, r.token = outbox.StateDelivered, now, ""
		case backend.Dead, backend.DeadUnsent:
			r.state, r.doneAt, r.token = outbox.StateDead, now, ""
		case backend.Retry:
			r.availableAt, r.token = now.Add(o.Delay), ""
		case backend.Release:
			r.availableAt, r.token = now, ""
		case backend.Pause:
			r.availableAt, r.token = now, ""
			if until := now.Add(o.Delay); until.After(s.pauses[r.msg.Destination].Until) {
				s.pauses[r.msg.Destination] = outbox.PausedDestination{Destination: r.msg.Destination, Until: until, Reason: o.Error}
			}
		case backend.Extend:
			r.availableAt = now.Add(o.Delay)
		}
		if r.state != outbox.StatePending && r.msg.Key != "" {
			s.unparkNext(r.msg.Key, now)
		}
	}
	return refused, nil
}

// unparkNext makes the head of key ready if it is parked. s.mu is held.
func (s *Store) unparkNext(key string, now time.Time) {
	var head *row
	for _, r := range s.rows {
		if r.msg.Key == key && r.state == outbox.StatePending && (head == nil || r.pos < head.pos) {
			head = r
		}
	}
	if head != nil && head.availableAt.IsZero() {
		head.availableAt = cmp.Or(head.msg.NotBefore, now)
		if head.availableAt.Before(now) {
			head.availableAt = now
		}
	}
}

// Cleanup deletes up to limit messages delivered more than retention ago.
func (s *Store) Cleanup(ctx context.Context, retention time.Duration, limit int) (int, error) {
	return s.cleanup(outbox.StateDelivered, retention, limit), nil
}

// CleanupDead deletes up to limit messages dead for more than retention.
func (s *Store) CleanupDead(ctx context.Context, retention time.Duration, limit int) (int, error) {
	return s.cleanup(outbox.StateDead, retention, limit), nil
}

func (s *Store) cleanup(state outbox.State, retention time.Duration, limit int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := time.Now().Add(-retention)
	n := 0
	for pos, r := range s.rows {
		if n == limit {
			break
		}
		if r.state == state && !r.doneAt.After(cutoff) {
			delete(s.rows, pos)
			delete(s.ids, r.msg.ID)
			n++
		}
	}
	return n
}

// Stats implements outbox.Store.
func (s *Store) Stats(ctx context.Context) (outbox.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st outbox.Stats
	now := time.Now()
	for _, r := range s.rows {
		switch r.state {
		case outbox.StatePending:
			st.Pending++
			st.OldestPendingAge = max(st.OldestPendingAge, now.Sub(r.createdAt))
		case outbox.StateDead:
			st.Dead++
		}
	}
	return st, nil
}

func (r *row) record() outbox.Record {
	m := r.msg
	if m.Headers != nil {
		m.Headers = cloneMap(m.Headers)
	}
	avail := r.availableAt
	if avail.IsZero() {
		avail = time.UnixMicro(1<<63 - 1)
	}
	return outbox.Record{Message: m, Position: r.pos, State: r.state, Attempts: r.attempts, LastError: r.lastError,
		CreatedAt: r.createdAt, AvailableAt: avail, DoneAt: r.doneAt}
}

// ListDead implements outbox.Store.
func (s *Store) ListDead(ctx context.Context, topic string, after int64, limit int) ([]outbox.Record, error) {
	if limit <= 0 {
		limit = 100
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []outbox.Record
	for _, r := range s.rows {
		if r.state == outbox.StateDead && r.pos > after && (topic == "" || r.msg.Topic == topic) {
			out = append(out, r.record())
		}
	}
	slices.SortFunc(out, func(a, b outbox.Record) int { return cmp.Compare(a.Position, b.Position) })
	return out[:min(len(out), limit)], nil
}

// Get implements outbox.Store.
func (s *Store) Get(ctx context.Context, id string) (outbox.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, ok := s.ids[id]
	if !ok {
		return outbox.Record{}, outbox.ErrNotFound
	}
	return s.rows[pos].record(), nil
}

// Requeue implements outbox.Store.
func (s *Store) Requeue(ctx context.Context, ids ...string) (int, error) {
	if err := checkIDs(ids); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	n := 0
	// In position order, each to the tail of its key with a new position.
	var dead []*row
	for _, id := range ids {
		if pos, ok := s.ids[id]; ok && s.rows[pos].state == outbox.StateDead && !slices.Contains(dead, s.rows[pos]) {
			dead = append(dead, s.rows[pos])
		}
	}
	slices.SortFunc(dead, func(a, b *row) int { return cmp.Compare(a.pos, b.pos) })
	for _, r := range dead {
		delete(s.rows, r.pos)
		s.seq++
		r.pos = s.seq
		r.state, r.attempts, r.claims, r.token, r.doneAt = outbox.StatePending, 0, 0, "", time.Time{}
		r.availableAt = now
		if r.msg.NotBefore.After(now) {
			r.availableAt = r.msg.NotBefore
		}
		if r.msg.Key != "" && s.pendingBefore(r.msg.Key, r.pos) {
			r.availableAt = time.Time{}
		}
		s.rows[r.pos] = r
		s.ids[r.msg.ID] = r.pos
		n++
	}
	return n, nil
}

// Pauses implements outbox.Store.
func (s *Store) Pauses(ctx context.Context) ([]outbox.PausedDestination, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var out []outbox.PausedDestination
	for _, p := range s.pauses {
		if p.Until.After(now) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b outbox.PausedDestination) int { return strings.Compare(a.Destination, b.Destination) })
	return out, nil
}

// Resume implements outbox.Store.
func (s *Store) Resume(ctx context.Context, destinations ...string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	n := 0
	for _, d := range destinations {
		if p, ok := s.pauses[d]; ok {
			if p.Until.After(now) {
				n++
			}
			delete(s.pauses, d)
		}
	}
	return n, nil
}

// Discard implements outbox.Store.
func (s *Store) Discard(ctx context.Context, ids ...string) (int, error) {
	if err := checkIDs(ids); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if pos, ok := s.ids[id]; ok && s.rows[pos].state == outbox.StateDead {
			delete(s.rows, pos)
			delete(s.ids, id)
			n++
		}
	}
	return n, nil
}

func checkIDs(ids []string) error {
	for _, id := range ids {
		if _, err := uuid.Parse(id); err != nil {
			return errString("memstore: " + strings.TrimSpace(id) + " is not a UUID")
		}
	}
	return nil
}

// Corrupt sets the stored headers of message id to h, behind the API's
// back, as a row damaged in the database would read.
func (s *Store) Corrupt(id string, h map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos, ok := s.ids[id]; ok {
		s.rows[pos].msg.Headers = h
	}
}

// LeaseEnd returns when the claim of message id ends, as the store sees it,
// or the zero time when the message is not claimed.
func (s *Store) LeaseEnd(id string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos, ok := s.ids[id]; ok && s.rows[pos].token != "" && s.rows[pos].state == outbox.StatePending {
		return s.rows[pos].availableAt
	}
	return time.Time{}
}

// TimesClaimed returns how many times message id was claimed.
func (s *Store) TimesClaimed(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos, ok := s.ids[id]; ok {
		return s.rows[pos].claimed
	}
	return 0
}
