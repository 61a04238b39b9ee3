package sqloutbox

import (
	"context"
	"strings"

	"github.com/steadfast-go/steadfast/outbox"
)

func (s *Store) sqliteEnqueue(ctx context.Context, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	now := micros(s.cfg.now())
	var b strings.Builder
	b.WriteString("INSERT INTO " + s.cfg.table + " (id, topic, partition_key, headers, payload, traceparent, not_before, created_at, available_at) VALUES ")
	args := make([]any, 0, len(ms)*11)
	seen := map[string]bool{}
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		var nb any
		avail := now
		if !m.NotBefore.IsZero() {
			avail = micros(m.NotBefore)
			nb = avail
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		args = append(args, m.ID, m.Topic, nullable(m.Key), nullable(hs[i]), p, nullable(tp), nb, now)
		if m.Key == "" {
			b.WriteString("(?,?,?,?,?,?,?,?,?)")
			args = append(args, avail)
			continue
		}
		// Parked behind a pending message of its key, in the table or
		// earlier in this batch.
		b.WriteString("(?,?,?,?,?,?,?,?,CASE WHEN ? OR EXISTS (SELECT 1 FROM " + s.cfg.table +
			" e WHERE e.partition_key = ? AND e.state = 0) THEN " + parked + " ELSE ? END)")
		args = append(args, seen[m.Key], m.Key, avail)
		seen[m.Key] = true
	}
	return exec(ctx, b.String(), args...)
}

func (s *Store) sqliteClaim(ctx context.Context, req outbox.ClaimRequest, token string) ([]outbox.Claimed, error) {
	now := s.cfg.now()
	x, xargs := exclusion(req.Exclude)
	q := strings.Replace(s.q.claim, "{x}", x, 1)
	args := append([]any{token, micros(now.Add(req.Lease)), micros(now)}, xargs...)
	args = append(args, req.Limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return collectClaimed(rows, token, req.Limit)
}
