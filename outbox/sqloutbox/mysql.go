package sqloutbox

import (
	"context"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
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
		q := "INSERT INTO " + s.cfg.table + "_keys (partition_key) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?),", len(keys)), ",") +
			" ON DUPLICATE KEY UPDATE partition_key = partition_key"
		if err := exec(ctx, q, args...); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString("INSERT INTO " + s.cfg.table + " (id, topic, partition_key, headers, payload, traceparent, created_at, available_at) VALUES ")
	args := make([]any, 0, len(ms)*7)
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?," + mysqlNow + ",COALESCE(?," + mysqlNow + "))")
		var avail any
		if !m.NotBefore.IsZero() {
			avail = micros(m.NotBefore)
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		args = append(args, m.ID, m.Topic, nullable(m.Key), nullable(hs[i]), p, nullable(tp), avail)
	}
	return exec(ctx, b.String(), args...)
}

func (s *Store) mysqlClaim(ctx context.Context, req outbox.ClaimRequest, token string) ([]outbox.Claimed, error) {
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
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(seqs) == 0 {
		return nil, tx.Commit()
	}
	in := placeholders(len(seqs))
	upd := "UPDATE " + s.cfg.table + " SET claim_token = ?, available_at = " + mysqlNow + " + ?, attempts = attempts + 1 WHERE seq IN (" + in + ")"
	if _, err := tx.ExecContext(ctx, upd, append([]any{token, req.Lease.Microseconds()}, seqs...)...); err != nil {
		return nil, err
	}
	sel := "SELECT seq, id, topic, partition_key, headers, payload, traceparent, created_at, attempts FROM " + s.cfg.table + " WHERE seq IN (" + in + ")"
	rows, err = tx.QueryContext(ctx, sel, seqs...)
	if err != nil {
		return nil, err
	}
	out, err := collectClaimed(rows, token, len(seqs))
	if err != nil {
		return nil, err
	}
	return out, tx.Commit()
}

func (s *Store) mysqlCleanup(ctx context.Context, retention time.Duration, limit int) (int64, error) {
	tx, err := s.db.BeginTx(ctx, s.txOptions())
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	rows, err := tx.QueryContext(ctx, s.q.cleanup, retention.Microseconds(), limit)
	if err != nil {
		return 0, err
	}
	var seqs []any
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return 0, err
		}
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(seqs) == 0 {
		return 0, tx.Commit()
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM "+s.cfg.table+" WHERE state = 1 AND seq IN ("+placeholders(len(seqs))+")", seqs...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	return n, tx.Commit()
}
