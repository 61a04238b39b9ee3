package sqloutbox

import (
	"context"
	"strings"

	"github.com/steadfast-go/steadfast/outbox"
)

func (s *Store) sqliteEnqueue(ctx context.Context, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	now := micros(s.cfg.now())
	var b strings.Builder
	b.WriteString("INSERT INTO " + s.cfg.table + " (id, topic, partition_key, headers, payload, traceparent, created_at, available_at) VALUES ")
	args := make([]any, 0, len(ms)*8)
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
		avail := now
		if !m.NotBefore.IsZero() {
			avail = micros(m.NotBefore)
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		args = append(args, m.ID, m.Topic, nullable(m.Key), nullable(hs[i]), p, nullable(tp), now, avail)
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
