package sqloutbox

import (
	"context"
	"database/sql"
	"slices"
	"strings"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox/backend"
)

// settleSets is what each kind of outcome writes on SQLite and MySQL
// ({now} is the clock, the first ? the delay in µs, the second the error).
// attempts counts the outcomes of publishes; claims the claims not given
// back (see pgSettle). A delivered message is deleted instead, unless the
// store keeps delivered messages. Release, Pause and Extend leave
// available_at, which an index holds, alone.
var settleSets = map[backend.OutcomeKind]string{
	backend.Delivered:  "state = 1, done_at = {now}, claim_token = NULL, leased_until = NULL, attempts = attempts + 1",
	backend.Retry:      "available_at = {now} + ?, claim_token = NULL, leased_until = NULL, attempts = attempts + 1, last_error = COALESCE(?, last_error)",
	backend.Dead:       "state = 2, done_at = {now}, claim_token = NULL, leased_until = NULL, attempts = attempts + 1, last_error = COALESCE(?, last_error)",
	backend.DeadUnsent: "state = 2, done_at = {now}, claim_token = NULL, leased_until = NULL, claims = claims - 1, last_error = COALESCE(?, last_error)",
	backend.Release:    "claim_token = NULL, leased_until = NULL, claims = claims - 1",
	backend.Pause:      "claim_token = NULL, leased_until = NULL, claims = claims - 1, last_error = COALESCE(?, last_error)",
	backend.Extend:     "leased_until = {now} + ?",
}

// settleGroup is the outcomes that one statement applies: same kind, delay
// and error (each row's own token is checked by the statement).
type settleGroup struct {
	o   backend.Outcome
	out []backend.Outcome
}

// txSettle applies outcomes in one transaction (SQLite, MySQL), one
// statement per group of outcomes that write the same values, and returns
// the refused positions. SQLite reads the applied positions back with
// RETURNING; MySQL counts the affected rows and, when some were refused,
// settles again after locking the rows to learn which.
func (s *Store) txSettle(ctx context.Context, outcomes []backend.Outcome) ([]int64, error) {
	refused, ok, err := s.txSettleOnce(ctx, outcomes, false)
	if err != nil || ok {
		return refused, err
	}
	refused, _, err = s.txSettleOnce(ctx, outcomes, true)
	return refused, err
}

// heldBy is the condition that each row of out is still pending and held by
// its outcome's token, and its arguments: the positions (which the primary
// key finds) and the pairs of position and token.
func (s *Store) heldBy(out []backend.Outcome) (string, []any) {
	args := make([]any, 0, 3*len(out))
	for _, o := range out {
		args = append(args, o.Position)
	}
	pairs := strings.TrimSuffix(strings.Repeat("(?,?),", len(out)), ",")
	if s.dialect == steadfast.SQLite {
		pairs = "VALUES " + pairs // SQLite's row-value IN takes a subquery
	}
	for _, o := range out {
		args = append(args, o.Position, o.Token)
	}
	return "state = 0 AND seq IN (" + placeholders(len(out)) + ") AND (seq, claim_token) IN (" + pairs + ")", args
}

// txSettleOnce settles outcomes. On MySQL without careful, ok is false (and
// nothing committed) when some outcome was refused: the caller runs it again
// with careful, which first locks the rows to find the ones still held.
func (s *Store) txSettleOnce(ctx context.Context, outcomes []backend.Outcome, careful bool) (refused []int64, ok bool, err error) {
	tx, err := s.db.BeginTx(ctx, s.txOptions())
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op

	held := map[int64]bool{} // careful: the positions still held by their token
	if careful {
		seqs := make([]any, len(outcomes))
		toks := map[int64]string{}
		for i, o := range outcomes {
			seqs[i] = o.Position
			toks[o.Position] = o.Token
		}
		rows, err := tx.QueryContext(ctx, s.expand("SELECT seq, claim_token FROM {t} WHERE state = 0 AND seq IN ("+placeholders(len(seqs))+") FOR UPDATE"), seqs...)
		if err != nil {
			return nil, false, err
		}
		for rows.Next() {
			var seq int64
			var tok sql.NullString
			if err := rows.Scan(&seq, &tok); err != nil {
				rows.Close()
				return nil, false, err
			}
			held[seq] = tok.Valid && tok.String == toks[seq]
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, false, err
		}
	}

	var groups []*settleGroup
	index := map[backend.Outcome]*settleGroup{}
	for _, o := range outcomes {
		if careful && !held[o.Position] {
			refused = append(refused, o.Position)
			continue
		}
		k := backend.Outcome{Kind: o.Kind, Delay: o.Delay, Error: o.Error}
		g := index[k]
		if g == nil {
			g = &settleGroup{o: k}
			index[k] = g
			groups = append(groups, g)
		}
		g.out = append(g.out, o)
	}

	var doneKeys []any  // SQLite: keys whose message was delivered or dead: their next message may be parked
	var nextHeads []any // MySQL: the next message of those keys
	if s.dialect == steadfast.MySQL {
		// MySQL cannot return the keys of the rows it deletes or updates:
		// read the next message of each key first (mysqlNextHeads), and
		// unpark it below if it is parked.
		var done []any
		for _, g := range groups {
			if isDone(g.o.Kind) {
				for _, o := range g.out {
					done = append(done, o.Position)
				}
			}
		}
		if len(done) > 0 {
			in := placeholders(len(done))
			rows, err := tx.QueryContext(ctx, s.expand(strings.ReplaceAll(mysqlNextHeads, "{done}", in)), done...)
			if err != nil {
				return nil, false, err
			}
			for rows.Next() {
				var seq sql.NullInt64 // NULL: the key has no other pending message
				if err := rows.Scan(&seq); err != nil {
					rows.Close()
					return nil, false, err
				}
				if seq.Valid {
					nextHeads = append(nextHeads, seq.Int64)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, false, err
			}
		}
	}
	applied := map[int64]bool{}
	for _, g := range groups {
		cond, condArgs := s.heldBy(g.out)
		var q string
		var args []any
		if g.o.Kind == backend.Delivered && !s.cfg.keepDelivered {
			q = "DELETE FROM {t} WHERE " + cond
		} else {
			set := settleSets[g.o.Kind]
			if strings.Contains(set, "+ ?") {
				args = append(args, g.o.Delay.Microseconds())
			}
			if strings.Contains(set, "COALESCE(?") {
				args = append(args, nullable(g.o.Error))
			}
			q = "UPDATE {t} SET " + set + " WHERE " + cond
		}
		args = append(args, condArgs...)
		q = s.expand(q)
		done := isDone(g.o.Kind)
		var groupApplied []any
		if s.dialect == steadfast.SQLite {
			rows, err := tx.QueryContext(ctx, q+" RETURNING seq, partition_key", args...)
			if err != nil {
				return nil, false, err
			}
			for rows.Next() {
				var seq int64
				var key sql.NullString
				if err := rows.Scan(&seq, &key); err != nil {
					rows.Close()
					return nil, false, err
				}
				applied[seq] = true
				groupApplied = append(groupApplied, seq)
				if done && key.Valid {
					doneKeys = append(doneKeys, key.String)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, false, err
			}
		} else {
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return nil, false, err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return nil, false, err
			}
			if int(n) != len(g.out) && !careful {
				return nil, false, nil
			}
			for _, o := range g.out {
				applied[o.Position] = true
				groupApplied = append(groupApplied, o.Position)
			}
		}
		if g.o.Kind == backend.Pause && len(groupApplied) > 0 {
			// The pause of the messages' destination, recorded once where
			// every relay sees it; a longer pause already there stays.
			q := s.expand("INSERT INTO {p} (destination, paused_until, reason, paused_at) SELECT DISTINCT destination, {now} + ?, ?, {now} FROM {t} WHERE seq IN (" +
				placeholders(len(groupApplied)) + ")" + s.pauseUpsert())
			if _, err := tx.ExecContext(ctx, q, append([]any{g.o.Delay.Microseconds(), g.o.Error}, groupApplied...)...); err != nil {
				return nil, false, err
			}
		}
	}
	if !careful {
		for _, o := range outcomes {
			if !applied[o.Position] {
				refused = append(refused, o.Position)
			}
		}
	}
	if len(nextHeads) > 0 {
		if _, err := tx.ExecContext(ctx, s.expand(mysqlUnparkSeqs+" AND seq IN ("+placeholders(len(nextHeads))+")"), nextHeads...); err != nil {
			return nil, false, err
		}
	}
	if len(doneKeys) > 0 {
		q := strings.ReplaceAll(s.expand(genericUnpark), "{keys}", placeholders(len(doneKeys)))
		if _, err := tx.ExecContext(ctx, q, doneKeys...); err != nil {
			return nil, false, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	slices.Sort(refused)
	return refused, true, nil
}

// pauseUpsert is the end of the INSERT of a pause that keeps the later end
// of the two when the destination is paused already.
func (s *Store) pauseUpsert() string {
	if s.dialect == steadfast.MySQL {
		return " ON DUPLICATE KEY UPDATE reason = IF(VALUES(paused_until) > paused_until, VALUES(reason), reason)," +
			" paused_at = IF(VALUES(paused_until) > paused_until, VALUES(paused_at), paused_at)," +
			" paused_until = GREATEST(paused_until, VALUES(paused_until))"
	}
	return " AND true ON CONFLICT (destination) DO UPDATE SET paused_until = max(paused_until, excluded.paused_until)," +
		" reason = CASE WHEN excluded.paused_until > paused_until THEN excluded.reason ELSE reason END," +
		" paused_at = CASE WHEN excluded.paused_until > paused_until THEN excluded.paused_at ELSE paused_at END"
}

func (s *Store) txOptions() *sql.TxOptions {
	if s.dialect == steadfast.MySQL {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}

// isDone reports whether an outcome of kind ends its message: the next
// message of its key may go.
func isDone(kind backend.OutcomeKind) bool {
	return kind == backend.Delivered || kind == backend.Dead || kind == backend.DeadUnsent
}
