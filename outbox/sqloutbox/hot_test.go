package sqloutbox_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// TestPostgresLeasesRewriteRowsInPlace: on PostgreSQL a claim changes no
// indexed column nor the row's size, and the table's fill factor leaves
// room in every page for a new version of each of its rows, so every claim
// of fresh messages is a HOT update (the row rewritten in place, no index
// entry added), and a delivery deletes the row. (A renewal or a release is
// a HOT update too when the page can be pruned of the claim's version,
// which another session's old snapshot may prevent.)
func TestPostgresLeasesRewriteRowsInPlace(t *testing.T) {
	url := testenv.PostgresURL(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the statistics are flushed by the session that wrote them
	table := tableName()
	s, err := sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(table))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Exec("DROP TABLE IF EXISTS " + table)
		db.Exec("DROP TABLE IF EXISTS " + table + "_pauses")
	})
	const n = 300
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "t", Payload: []byte(`{"order":` + strconv.Itoa(i) + `,"note":"a payload of a realistic size, well over a hundred bytes long, to fill the pages"}`)}
	}
	if err := s.EnqueueWithoutTx(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	counts := func() (upd, hot, del int64) {
		t.Helper()
		if _, err := db.ExecContext(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "SELECT 1"); err != nil { // a transaction end flushes
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "SELECT n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables WHERE relid = $1::regclass",
			table).Scan(&upd, &hot, &del); err != nil {
			t.Fatal(err)
		}
		return upd, hot, del
	}
	u0, h0, d0 := counts()
	c, err := claim(ctx, s, n)
	if err != nil || len(c) != n {
		t.Fatalf("claimed %d, %v", len(c), err)
	}
	u1, h1, _ := counts()
	if u1-u0 != n || h1-h0 != n {
		t.Errorf("claim of %d messages: %d updates, %d of them HOT; want %d, all HOT", n, u1-u0, h1-h0, n)
	}
	outs := make([]backend.Outcome, len(c))
	for i, c := range c {
		outs[i] = backend.Outcome{Position: c.Position, Token: c.Token, Kind: backend.Delivered}
	}
	if refused, err := s.Settle(ctx, outs); err != nil || len(refused) > 0 {
		t.Fatal(refused, err)
	}
	u2, _, d2 := counts()
	if u2 != u1 || d2-d0 != n {
		t.Errorf("delivery of %d messages: %d updates, %d deletes; want %d deletes", n, u2-u1, d2-d0, n)
	}
}
