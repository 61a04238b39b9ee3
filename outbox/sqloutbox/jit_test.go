package sqloutbox_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/steadfast-go/steadfast/outbox"
)

// TestPostgresClaimNeverJITCompiled: the claim's plan is cheap enough that
// PostgreSQL never JIT-compiles it (jit_above_cost, 100,000 by default),
// also when all the backlog goes to one destination, paused destinations
// exist in the table of pauses, and the relay excludes that destination.
// JIT compiling costs about half a second of the server's CPU on each
// execution: every claim of a single-destination outbox paid it when the
// estimate of the pause filter collapsed to one row.
func TestPostgresClaimNeverJITCompiled(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	n := 30000
	for i := 0; i < n; i += 1000 {
		batch := make([]outbox.Message, 1000)
		for j := range batch {
			batch[j] = outbox.Message{Topic: "orders", Payload: []byte(`{"n":` + strconv.Itoa(i+j) + `}`)}
		}
		if err := s.EnqueueWithoutTx(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "ANALYZE "+s.Table()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		exclude []string
	}{{"nothing excluded", nil}, {"the only destination excluded", []string{"orders"}}} {
		t.Run(c.name, func(t *testing.T) {
			q, args := s.ClaimStatement(300, c.exclude)
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, "SET LOCAL jit = on"); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, "SET LOCAL jit_above_cost = 100000"); err != nil {
				t.Fatal(err)
			}
			var raw []byte
			if err := tx.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+q, args...).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			var plan []struct {
				Plan struct {
					TotalCost float64 `json:"Total Cost"`
				}
				JIT json.RawMessage
			}
			if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
				t.Fatalf("plan %s: %v", raw, err)
			}
			if plan[0].JIT != nil || plan[0].Plan.TotalCost > 100000 {
				t.Errorf("the claim costs %.0f and is JIT-compiled (%s); want a cost under jit_above_cost", plan[0].Plan.TotalCost, plan[0].JIT)
			}
		})
	}
}
