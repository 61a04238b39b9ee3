package sqloutbox

import (
	"context"
	"database/sql"
	"strings"

	"github.com/steadfast-go/steadfast/outbox"
)

// txSettle applies outcomes in one transaction (SQLite, MySQL): delivered
// messages in one statement per claim token, the others one by one.
func (s *Store) txSettle(ctx context.Context, outcomes []outbox.Outcome) (int64, error) {
	tx, err := s.db.BeginTx(ctx, s.txOptions())
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	now, nowArgs := s.nowSQL()
	var applied int64
	add := func(res sql.Result, err error) error {
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		applied += n
		return err
	}
	delivered := map[string][]any{}
	var order []string
	for _, o := range outcomes {
		switch o.Kind {
		case outbox.Delivered:
			if _, ok := delivered[o.Token]; !ok {
				order = append(order, o.Token)
			}
			delivered[o.Token] = append(delivered[o.Token], o.Position)
		case outbox.Dead:
			q := "UPDATE " + s.cfg.table + " SET state = 2, done_at = " + now + ", claim_token = NULL, last_error = ? WHERE seq = ? AND claim_token = ? AND state = 0"
			if err := add(tx.ExecContext(ctx, q, append(append([]any{}, nowArgs...), o.LastError, o.Position, o.Token)...)); err != nil {
				return 0, err
			}
		default:
			refund := 0
			if o.Refund {
				refund = 1
			}
			q := "UPDATE " + s.cfg.table + " SET available_at = " + now + " + ?, claim_token = NULL, attempts = attempts - ?, last_error = COALESCE(?, last_error) WHERE seq = ? AND claim_token = ? AND state = 0"
			if err := add(tx.ExecContext(ctx, q, append(append([]any{}, nowArgs...), o.Delay.Microseconds(), refund, nullable(o.LastError), o.Position, o.Token)...)); err != nil {
				return 0, err
			}
		}
	}
	var done []any // positions delivered or dead: their key's next message may be parked
	for _, o := range outcomes {
		if o.Kind == outbox.Delivered || o.Kind == outbox.Dead {
			done = append(done, o.Position)
		}
	}
	for _, tok := range order {
		seqs := delivered[tok]
		q := "UPDATE " + s.cfg.table + " SET state = 1, done_at = " + now + ", claim_token = NULL WHERE claim_token = ? AND state = 0 AND seq IN (" + placeholders(len(seqs)) + ")"
		args := append(append(append([]any{}, nowArgs...), tok), seqs...)
		if err := add(tx.ExecContext(ctx, q, args...)); err != nil {
			return 0, err
		}
	}
	if len(done) > 0 && s.dialect == SQLite { // MySQL does not park (see mysqlEnqueue)
		q := strings.NewReplacer("{t}", s.cfg.table, "{now}", now, "{seqs}", placeholders(len(done))).Replace(genericUnpark)
		args := append(append(append([]any{}, nowArgs...), nowArgs...), done...)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return 0, err
		}
	}
	return applied, tx.Commit()
}

// unparkAll runs genericUnparkAll.
func (s *Store) unparkAll(ctx context.Context) error {
	now, nowArgs := s.nowSQL()
	q := strings.NewReplacer("{t}", s.cfg.table, "{now}", now).Replace(genericUnparkAll)
	_, err := s.db.ExecContext(ctx, q, append(append([]any{}, nowArgs...), nowArgs...)...)
	return err
}

// nowSQL returns the SQL for "now" in microseconds and its arguments.
func (s *Store) nowSQL() (string, []any) {
	if s.dialect == MySQL {
		return mysqlNow, nil
	}
	return "?", []any{micros(s.cfg.now())}
}

func (s *Store) txOptions() *sql.TxOptions {
	if s.dialect == MySQL {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}
