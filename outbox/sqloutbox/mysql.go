package sqloutbox

import (
	"context"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
)

// mysqlEnqueue does not park keyed messages behind their key's head as the
// other dialects do: in MySQL the check would be a locking read inside the
// caller's transaction, and would wait on other writers' rows. A deep
// backlog on one key is therefore scanned by every claim.
func (s *Store) mysqlEnqueue(ctx context.Context, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	if keys := sortedKeys(ms); len(keys) > 0 {
		// Lock the keys' rows, in key order, until the transaction ends.
		args := make([]any, len(keys))
		for i, k := range keys {
			args[i] = k
		}
		q := s.expand("INSERT INTO {k} (partition_key) VALUES ") +
			strings.TrimSuffix(strings.Repeat("(?),", len(keys)), ",") +
			" ON DUPLICATE KEY UPDATE partition_key = partition_key"
		if err := exec(ctx, q, args...); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString(s.expand("INSERT INTO {t} (id, topic, destination, partition_key, headers, payload, traceparent, created_at, available_at) VALUES "))
	args := make([]any, 0, len(ms)*8)
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?," + mysqlNow + ",COALESCE(?," + mysqlNow + "))")
		var avail any
		if !m.NotBefore.IsZero() {
			avail = m.NotBefore.UnixMicro()
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		args = append(args, m.ID, m.Topic, m.Destination, nullable(m.Key), nullable(hs[i]), p, nullable(tp), avail)
	}
	return exec(ctx, b.String(), args...)
}

func (s *Store) mysqlClaim(ctx context.Context, req backend.ClaimRequest, token string) ([]claimedRow, error) {
	tx, err := s.db.BeginTx(ctx, s.txOptions())
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	x, xargs := exclusion(req.Exclude)
	rows, err := tx.QueryContext(ctx, strings.Replace(s.q.claim, "{x}", x, 1), append(xargs, req.Limit)...)
	if err != nil {
		return nil, err
	}
	out, err := collectClaimed(rows, token, req.Limit)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, tx.Commit()
	}
	args := make([]any, 0, len(out)+2)
	args = append(args, token, req.Lease.Microseconds())
	for _, r := range out {
		args = append(args, r.d.Position)
	}
	upd := s.expand("UPDATE {t} SET claim_token = ?, leased_until = {now} + ?, claims = claims + 1 WHERE seq IN (" + placeholders(len(out)) + ")")
	if _, err := tx.ExecContext(ctx, upd, args...); err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

// scanSeqs reads a column of positions and closes rows.
func scanSeqs(rows interface {
	Next() bool
	Scan(...any) error
	Close() error
	Err() error
}) ([]any, error) {
	defer rows.Close()
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	return seqs, rows.Err()
}

func (s *Store) mysqlCleanup(ctx context.Context, state int, retention time.Duration, limit int) (int64, error) {
	tx, err := s.db.BeginTx(ctx, s.txOptions())
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	rows, err := tx.QueryContext(ctx, s.q.cleanup, state, retention.Microseconds(), limit)
	if err != nil {
		return 0, err
	}
	seqs, err := scanSeqs(rows)
	if err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, tx.Commit()
	}
	res, err := tx.ExecContext(ctx, s.expand("DELETE FROM {t} WHERE state = ? AND seq IN ("+placeholders(len(seqs))+")"), append([]any{state}, seqs...)...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return n, tx.Commit()
}
