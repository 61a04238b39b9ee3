package sqloutbox

import (
	"cmp"
	"context"
	"database/sql"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/internal/wake"
)

// smallBatch is the largest batch that pgEnqueue writes with a VALUES list
// (cheapest for one message); larger ones go through arrays.
const smallBatch = 8

// pgEnqueue inserts ms with one statement: the locks of the batch's keys
// are taken, in key order, before any row gets its position (the k CTE is
// joined, so it runs first); rows get positions in the order of ms; the
// NOTIFY is sent at commit.
//
// A keyed message is parked (out of the ready range, until the settle of
// its predecessor unparks it) when an earlier message of its key is
// pending, in the table (waiting or claimed) or earlier in the batch, so
// that claims never examine a message that cannot go yet: their cost does
// not grow with the backlog behind the keys' heads. The predecessor may be
// settled while this transaction is still open; its settle, which cannot
// see this row yet, does not unpark it, and the unpark sweep (pgUnpark) makes
// it ready at most unparkEvery after it commits.
func (s *Store) pgEnqueue(ctx context.Context, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	if len(ms) > smallBatch {
		return s.pgEnqueueArrays(ctx, exec, ms, hs, tp)
	}
	if len(ms) == 1 && ms[0].Key == "" {
		// The most common shape, one statement of a fixed text.
		m := ms[0]
		var nb any
		if !m.NotBefore.IsZero() {
			nb = m.NotBefore
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		q, args := s.q.enqueueOne, []any{m.ID, m.Topic, m.Destination, nullable(hs[0]), p, nullable(tp), nb}
		if s.notifyDue() {
			q, args = s.q.enqueueOneNotify, append(args, s.Table())
		}
		return exec(ctx, q, args...)
	}
	var b strings.Builder
	args := make([]any, 0, len(ms)*7+4)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	keys := sortedKeys(ms)
	var with, from []string
	if len(keys) == 1 {
		with = append(with, "k AS (SELECT 1 AS n FROM (SELECT pg_advisory_xact_lock("+arg(s.lockID)+", hashtext("+arg(keys[0])+"))) AS x)")
		from = append(from, "k")
	} else if len(keys) > 1 {
		with = append(with, "k AS (SELECT count(pg_advisory_xact_lock("+arg(s.lockID)+", hashtext(x))) AS n FROM (SELECT x FROM unnest("+arg(keys)+"::text[]) AS x ORDER BY x) AS sk)")
		from = append(from, "k")
	}
	if s.notifyDue() {
		with = append(with, "nt AS (SELECT 1 AS n FROM (SELECT pg_notify("+arg(s.Table())+", '')) AS x)")
		from = append(from, "nt")
	}
	if len(with) > 0 {
		b.WriteString("WITH " + strings.Join(with, ", ") + "\n")
	}
	tpArg := arg(nullable(tp))
	b.WriteString("INSERT INTO " + s.Table() + " (id, topic, destination, partition_key, headers, payload, traceparent, not_before, available_at)\n")
	b.WriteString("SELECT v.id, v.topic, v.d, v.k, v.h, v.p, " + tpArg + "::text, v.nb, ")
	if len(keys) > 0 {
		b.WriteString("CASE WHEN v.behind OR (v.k IS NOT NULL AND " + s.pendingOfKey("v.k") + ") THEN 'infinity' ELSE COALESCE(v.nb, now()) END")
	} else {
		b.WriteString("COALESCE(v.nb, now())")
	}
	b.WriteString("\nFROM (VALUES ")
	seen := map[string]bool{}
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		var nb any
		if !m.NotBefore.IsZero() {
			nb = m.NotBefore
		}
		p := m.Payload
		if p == nil {
			p = []byte{}
		}
		behind := m.Key != "" && seen[m.Key]
		if m.Key != "" {
			seen[m.Key] = true
		}
		b.WriteString("(" + arg(m.ID) + "::uuid, " + arg(m.Topic) + "::text, " + arg(m.Destination) + "::text, " + arg(nullable(m.Key)) + "::text, " +
			arg(nullable(hs[i])) + "::text, " + arg(p) + "::bytea, " + arg(nb) + "::timestamptz, " +
			arg(behind) + "::boolean, " + strconv.Itoa(i) + ")")
	}
	b.WriteString(") AS v(id, topic, d, k, h, p, nb, behind, ord)")
	for _, f := range from {
		b.WriteString(", " + f)
	}
	if len(ms) > 1 {
		b.WriteString("\nORDER BY v.ord")
	}
	return exec(ctx, b.String(), args...)
}

// pgEnqueueArrays is pgEnqueue for larger batches: one statement whose text
// does not depend on the batch's size (arrays, so the prepared statement and
// its plan are reused): the locks of
// the batch's keys are taken, in key order, before any row gets its
// position; rows get positions in the order of ms; the NOTIFY is sent at
// commit.
func (s *Store) pgEnqueueArrays(ctx context.Context, exec execFunc, ms []outbox.Message, hs []string, tp string) error {
	n := len(ms)
	ids, topics, dests, keys, payloads := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([][]byte, n)
	notBefore := make([]int64, n)
	for i, m := range ms {
		ids[i], topics[i], dests[i], keys[i], payloads[i] = m.ID, m.Topic, m.Destination, m.Key, m.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		if !m.NotBefore.IsZero() {
			notBefore[i] = m.NotBefore.UnixMicro()
		}
	}
	keyed := sortedKeys(ms)
	args := []any{ids, topics, dests, keys, hs, payloads, notBefore, nullable(tp)}
	var with, from string
	if len(keyed) > 0 {
		args = append(args, s.lockID, keyed)
		with = `k AS (SELECT count(pg_advisory_xact_lock($9, hashtext(x))) AS n
		FROM (SELECT x FROM unnest($10::text[]) AS x ORDER BY x) AS sk)`
		from += ", k"
	}
	if s.notifyDue() {
		args = append(args, s.Table())
		if with != "" {
			with += ", "
		}
		with += `nt AS (SELECT 1 AS n FROM (SELECT pg_notify($` + strconv.Itoa(len(args)) + `, '')) AS x)`
		from += ", nt"
	}
	if with != "" {
		with = "WITH " + with + "\n"
	}
	// A keyed message behind a pending one of its key is parked: it is
	// not ready until the settle of its predecessor unparks it.
	q := with + `INSERT INTO ` + s.Table() + ` (id, topic, destination, partition_key, headers, payload, traceparent, not_before, available_at)
SELECT v.id::uuid, v.topic, v.d, NULLIF(v.k, ''), NULLIF(v.h, ''), v.p, $8::text, v.nbt,
	CASE WHEN v.k <> '' AND (v.rn > 1 OR ` + s.pendingOfKey("v.k") + `)
	THEN 'infinity' ELSE COALESCE(v.nbt, now()) END
FROM (SELECT u.*, row_number() OVER (PARTITION BY u.k ORDER BY u.ord) AS rn,
		CASE WHEN u.nb = 0 THEN NULL ELSE to_timestamp(u.nb / 1000000.0) END AS nbt
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[])
		WITH ORDINALITY AS u(id, topic, d, k, h, p, nb, ord)) AS v` + from + `
ORDER BY v.ord`
	return exec(ctx, q, args...)
}

// pgToken returns a claim's token on PostgreSQL: a random positive integer
// (0 is no claim), which the settle compares as one.
func pgToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// pgTokenOf reads a token made by pgToken; -1 (which no claim has) when it
// is not one.
func pgTokenOf(s string) int64 {
	t, err := strconv.ParseInt(s, 10, 64)
	if err != nil || t <= 0 {
		return -1
	}
	return t
}

// pendingOfKey is the condition that a message of key (an SQL expression)
// is pending, in the table: through the index of heads, then through the
// index of parked messages (each is partial; "state = 0" alone would scan
// the table).
func (s *Store) pendingOfKey(key string) string {
	t := s.Table()
	return "(EXISTS (SELECT 1 FROM " + t + " e WHERE e.partition_key = " + key + " AND e.state = 0 AND e.available_at <> 'infinity')" +
		" OR EXISTS (SELECT 1 FROM " + t + " e WHERE e.partition_key = " + key + " AND e.state = 0 AND e.available_at = 'infinity'))"
}

// notifyDue reports whether an Enqueue now sends a NOTIFY: wake-ups are on,
// and the store has sent none for wake.Debounce (see package wake).
func (s *Store) notifyDue() bool {
	if !s.cfg.notify {
		return false
	}
	now := time.Now().UnixNano()
	last := s.notified.Load()
	return now-last >= int64(wake.Debounce) && s.notified.CompareAndSwap(last, now)
}

func (s *Store) pgClaim(ctx context.Context, req backend.ClaimRequest, token int64) ([]claimedRow, error) {
	if s.unparkDue() {
		if err := s.pgUnpark(ctx); err != nil {
			return nil, err
		}
	}
	var rows *sql.Rows
	var err error
	if len(req.Exclude) == 0 {
		rows, err = s.db.QueryContext(ctx, s.q.claim, req.Limit, token, seconds(req.Lease))
	} else {
		rows, err = s.db.QueryContext(ctx, s.q.claimExclude, req.Limit, token, seconds(req.Lease), req.Exclude)
	}
	if err != nil {
		return nil, err
	}
	return collectClaimed(rows, strconv.FormatInt(token, 10), req.Limit)
}

// pgSettle runs pgSettle; with a token (not 0) it also claims the next
// message of the keys it finishes, under lease, for the caller.
func (s *Store) pgSettle(ctx context.Context, outcomes []backend.Outcome, token int64, lease time.Duration) ([]int64, []claimedRow, error) {
	n := len(outcomes)
	seqs, toks, kinds, delays, errs, yields := make([]int64, n), make([]int64, n), make([]int16, n), make([]float64, n), make([]string, n), make([]bool, n)
	for i, o := range outcomes {
		seqs[i], toks[i], kinds[i], delays[i], errs[i], yields[i] = o.Position, pgTokenOf(o.Token), int16(o.Kind), seconds(o.Delay), o.Error, o.Yield
	}
	rows, err := s.db.QueryContext(ctx, s.q.settle, seqs, toks, kinds, delays, errs, token, seconds(lease), yields)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var refused []int64
	var claimed []claimedRow
	tok := ""
	// Read into the same variables for every row: each would otherwise
	// be allocated for each row (Scan takes their addresses).
	var (
		what                              int
		seq                               int64
		id, topic, dest, key, headers, tp sql.NullString
		payload                           []byte
		created, attempts, aband          sql.NullInt64
	)
	for rows.Next() {
		payload = nil
		if err := rows.Scan(&what, &seq, &id, &topic, &dest, &key, &headers, &payload, &tp, &created, &attempts, &aband); err != nil {
			return nil, nil, err
		}
		if what == 0 {
			refused = append(refused, seq)
			continue
		}
		if claimed == nil {
			claimed = make([]claimedRow, 0, n) // at most one per outcome
			tok = strconv.FormatInt(token, 10)
		}
		claimed = append(claimed, claimedRow{})
		r := &claimed[len(claimed)-1]
		r.d.Position, r.d.ID, r.d.Topic, r.d.Payload = seq, id.String, topic.String, payload
		fillClaimed(r, tok, dest, key, headers, tp, created.Int64, attempts.Int64, aband.Int64)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(claimed, func(a, b claimedRow) int { return cmp.Compare(a.d.Position, b.d.Position) })
	return refused, claimed, nil
}

// unparkKeys is the most keys with parked messages one unpark sweep looks
// at; the next sweep goes on from the last of them.
const unparkKeys = 1000

// pgUnpark runs one unpark sweep from the store's cursor and moves the
// cursor on (back to the start once it has gone round).
func (s *Store) pgUnpark(ctx context.Context) error {
	s.sweep.Lock()
	defer s.sweep.Unlock()
	var last sql.NullString
	var keys, unparked int
	if err := s.db.QueryRowContext(ctx, s.q.unpark, s.sweep.cursor, unparkKeys).Scan(&last, &keys, &unparked); err != nil {
		return err
	}
	s.sweep.cursor = last.String
	if keys < unparkKeys {
		s.sweep.cursor = ""
	}
	return nil
}
