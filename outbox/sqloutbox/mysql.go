package sqloutbox

import (
	"context"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
)

// mysqlEnqueue parks a keyed message behind an earlier pending one of its
// key, as the other dialects do, so that claims do not read past a deep
// per-key backlog message by message. Whether a key has a pending message
// is a plain (consistent, non-locking) read in the caller's transaction,
// after the key's row is locked: a locking read would wait on the relays'
// rows and make their write-backs wait on the caller's transaction. The
// read may be older than the newest commits (under REPEATABLE READ the
// snapshot can predate the key's lock), which errs in two ways, both safe:
// a message not parked that should have been is still held back by the
// claim's check that it is its key's head; one parked whose predecessor
// was settled meanwhile (that settle could not see it to unpark it) is
// unparked by the sweep (mysqlUnpark) within unparkEvery. A message with a
// NotBefore is not parked (MySQL keeps NotBefore only in available_at);
// the claim's check holds it back too.
func (s *Store) mysqlEnqueue(ctx context.Context, tx steadfast.Tx, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	var pending map[string]bool // keys with a message pending before this batch
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
		rows, err := tx.QueryContext(ctx, s.expand("SELECT DISTINCT partition_key FROM {t} WHERE state = 0 AND partition_key IN ("+placeholders(len(keys))+")"), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return err
			}
			if pending == nil {
				pending = map[string]bool{}
			}
			pending[k] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
	}
	var b strings.Builder
	b.WriteString(s.expand("INSERT INTO {t} (id, topic, destination, partition_key, headers, payload, traceparent, created_at, available_at) VALUES "))
	args := make([]any, 0, len(ms)*8)
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		args = append(args, m.ID, m.Topic, m.Destination, nullable(m.Key), nullable(hs[i]), p, nullable(tp))
		switch {
		case !m.NotBefore.IsZero():
			b.WriteString("(?,?,?,?,?,?,?," + mysqlNow + ",?)")
			args = append(args, m.NotBefore.UnixMicro())
		case m.Key != "" && pending[m.Key]:
			b.WriteString("(?,?,?,?,?,?,?," + mysqlNow + "," + parked + ")")
			continue
		default:
			b.WriteString("(?,?,?,?,?,?,?," + mysqlNow + "," + mysqlNow + ")")
		}
		if m.Key != "" {
			if pending == nil {
				pending = map[string]bool{}
			}
			pending[m.Key] = true // the batch's later messages of the key wait behind this one
		}
	}
	return exec(ctx, b.String(), args...)
}

func (s *Store) mysqlClaim(ctx context.Context, req backend.ClaimRequest, token string) ([]claimedRow, error) {
	if s.unparkDue() {
		if err := s.mysqlUnpark(ctx); err != nil {
			return nil, err
		}
	}
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

// mysqlUnpark runs one unpark sweep from the store's cursor: of the next
// unparkKeys keys with pending messages, it makes ready the lowest pending
// message when it is parked (its predecessor was settled while it was
// being enqueued; see mysqlEnqueue), and moves the cursor on (back to the
// start once it has gone round). The UPDATE checks again that the message
// is parked; a message it makes ready too early is held back by the
// claim's check that it is its key's head.
func (s *Store) mysqlUnpark(ctx context.Context) error {
	s.sweep.Lock()
	defer s.sweep.Unlock()
	rows, err := s.db.QueryContext(ctx, s.expand(mysqlUnparkHeads), s.sweep.cursor, unparkKeys)
	if err != nil {
		return err
	}
	defer rows.Close()
	var heads []any
	last := ""
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&last, &seq); err != nil {
			return err
		}
		heads = append(heads, seq)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	rows.Close()
	s.sweep.cursor = last
	if len(heads) < unparkKeys {
		s.sweep.cursor = ""
	}
	if len(heads) == 0 {
		return nil
	}
	_, err = s.db.ExecContext(ctx, s.expand(mysqlUnparkSeqs+" AND seq IN ("+placeholders(len(heads))+")"), heads...)
	return err
}
