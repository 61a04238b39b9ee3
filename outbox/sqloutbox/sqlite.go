package sqloutbox

import (
	"context"
	"strings"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
)

func (s *Store) sqliteEnqueue(ctx context.Context, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	var b strings.Builder
	b.WriteString(s.expand("INSERT INTO {t} (id, topic, destination, partition_key, headers, payload, traceparent, not_before, created_at, available_at) VALUES "))
	args := make([]any, 0, len(ms)*11)
	seen := map[string]bool{}
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		var nb any
		if !m.NotBefore.IsZero() {
			nb = m.NotBefore.UnixMicro()
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		args = append(args, m.ID, m.Topic, m.Destination, nullable(m.Key), nullable(hs[i]), p, nullable(tp), nb)
		avail := "COALESCE(?, " + sqliteNow + ")"
		if m.Key == "" {
			b.WriteString("(?,?,?,?,?,?,?,?," + sqliteNow + "," + avail + ")")
			args = append(args, nb)
			continue
		}
		// Parked behind a pending message of its key, in the table or
		// earlier in this batch.
		b.WriteString("(?,?,?,?,?,?,?,?," + sqliteNow + ",CASE WHEN ? OR EXISTS (SELECT 1 FROM " + s.Table() +
			" e WHERE e.partition_key = ? AND e.state = 0) THEN " + parked + " ELSE " + avail + " END)")
		args = append(args, seen[m.Key], m.Key, nb)
		seen[m.Key] = true
	}
	return exec(ctx, b.String(), args...)
}

func (s *Store) sqliteClaim(ctx context.Context, req backend.ClaimRequest, token string) ([]claimedRow, error) {
	x, xargs := exclusion(req.Exclude)
	q := strings.Replace(s.q.claim, "{x}", x, 1)
	args := append([]any{token, req.Lease.Microseconds()}, xargs...)
	args = append(args, req.Limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return collectClaimed(rows, token, req.Limit)
}
