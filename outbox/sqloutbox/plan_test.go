package sqloutbox_test

import (
	"context"
	"strings"
	"testing"

	"github.com/steadfast-go/steadfast/outbox"
)

// TestClaimIgnoresDeliveredRows: with many delivered rows left in the table
// (cleanup not run yet), the claim walks the partial index of pending rows
// and never scans the table.
func TestClaimIgnoresDeliveredRows(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	n := 300000
	if testing.Short() {
		n = 30000
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO `+s.Table()+` (id, topic, destination, partition_key, payload, state, done_at)
		SELECT gen_random_uuid(), 't', 't', CASE WHEN i % 2 = 0 THEN 'k' || (i % 100) END, '\x00', 1, now()
		FROM generate_series(1, $1) AS i`, n); err != nil {
		t.Fatal(err)
	}
	var batch []outbox.Message
	for i := range 100 {
		m := outbox.Message{Topic: "t", Payload: []byte("x")}
		if i%2 == 0 {
			m.Key = "k" + string(rune('a'+i%26))
		}
		batch = append(batch, m)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, tx, batch...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE "+s.Table()); err != nil {
		t.Fatal(err)
	}
	// The claim's selection, as Claim runs it.
	q := `EXPLAIN SELECT seq FROM ` + s.Table() + ` o
	WHERE state = 0 AND available_at <= now() AND NOT (destination = ANY ('{}'::text[]))
	  AND destination <> ALL (ARRAY(SELECT destination FROM ` + s.Table() + `_pauses WHERE paused_until > now()))
	  AND (partition_key IS NULL OR o.seq = (SELECT min(p.seq) FROM ` + s.Table() + ` p
		WHERE p.partition_key = o.partition_key AND p.partition_key IS NOT NULL AND p.state = 0))
	ORDER BY available_at LIMIT 100 FOR UPDATE SKIP LOCKED`
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, l)
	}
	rows.Close()
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Seq Scan on "+s.Table()+" ") || !strings.Contains(text, "_ready") {
		t.Errorf("the claim does not walk the pending index:\n%s", text)
	}
	c, err := claim(ctx, s, 1000)
	if err != nil || len(c) != 100-50+13 { // 50 keyless + one head per distinct key (13 letters used by even i)
		t.Errorf("claimed %d, %v", len(c), err)
	}
}

// TestClaimAndSettleUpdateByKey: on PostgreSQL the UPDATEs of the claim and
// of the write-back find their rows by primary key, however many delivered
// rows the table holds (joined to the claimed set alone, the planner hashed
// it and scanned the whole table on every claim and settle).
func TestClaimAndSettleUpdateByKey(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	const n = 30000 // a size at which the hash join was chosen; much larger tables got nested loops
	if _, err := db.ExecContext(ctx, `INSERT INTO `+s.Table()+` (id, topic, destination, payload, state, done_at)
		SELECT gen_random_uuid(), 't', 't', '\x00', 1, now() FROM generate_series(1, $1)`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO `+s.Table()+` (id, topic, destination, payload)
		SELECT gen_random_uuid(), 't', 't', '\x00' FROM generate_series(1, 300)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE "+s.Table()); err != nil {
		t.Fatal(err)
	}
	const batch = 300
	seqs, toks, kinds, delays, errs, yields := make([]int64, batch), make([]int64, batch), make([]int16, batch),
		make([]float64, batch), make([]string, batch), make([]bool, batch)
	for i := range batch {
		seqs[i], toks[i], kinds[i] = int64(n+i+1), 7, 1
	}
	claimSQL, claimArgs := s.ClaimStatement(batch, nil)
	excludeSQL, excludeArgs := s.ClaimStatement(batch, []string{"elsewhere"})
	for _, c := range []struct {
		name, sql string
		args      []any
	}{
		{"claim", claimSQL, claimArgs},
		{"claim excluding a destination", excludeSQL, excludeArgs},
		{"settle", s.SettleSQL(), []any{seqs, toks, kinds, delays, errs, int64(0), 0.0, yields}},
		{"settle claiming the next messages", s.SettleSQL(), []any{seqs, toks, kinds, delays, errs, int64(9), 60.0, yields}},
	} {
		rows, err := db.QueryContext(ctx, "EXPLAIN "+c.sql, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, l)
		}
		rows.Close()
		// (The table of paused destinations is small and read whole.)
		if text := strings.Join(plan, "\n"); strings.Contains(text, "Seq Scan on "+s.Table()+" ") {
			t.Errorf("the %s scans the table:\n%s", c.name, text)
		}
	}
}

// TestClaimGenericPlanIsLinear: the claim's UPDATE is not joined to the set
// of claimed rows. The generic plan of the prepared statement (which
// PostgreSQL adopts after a few executions) estimated that set at one row
// when most pending messages are keyed, and looped over it, probing the
// whole array of positions for each row: n*n index probes per claim of n.
func TestClaimGenericPlanIsLinear(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO `+s.Table()+` (id, topic, destination, partition_key, payload, available_at)
		SELECT gen_random_uuid(), 't', 't', 'k' || (i % 1000), '\x00', CASE WHEN i <= 1000 THEN now() ELSE 'infinity' END
		FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE "+s.Table()); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "RESET plan_cache_mode") //nolint:errcheck // the pool may reuse the connection
	for _, exclude := range [][]string{nil, {"elsewhere"}} {
		q, args := s.ClaimStatement(300, exclude)
		rows, err := conn.QueryContext(ctx, "EXPLAIN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, l)
		}
		rows.Close()
		// The claimed set is read once, into the array of positions.
		if text := strings.Join(plan, "\n"); strings.Count(text, "CTE Scan on c ") != 1 || strings.Contains(text, "Join Filter") {
			t.Errorf("the claim's generic plan (excluding %q) loops over the claimed rows:\n%s", exclude, text)
		}
	}
}
