package sqloutbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/outbox"
)

// TestPostgresEnqueueNotifiesAtMostEvery10ms: transactions that enqueue one
// after the other send at most one NOTIFY per 10 ms between them (a NOTIFY
// in every transaction serialises the commits of concurrent writers on a
// lock of the whole server).
func TestPostgresEnqueueNotifiesAtMostEvery10ms(t *testing.T) {
	db, s, _ := newPostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.Table()}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	const n = 50
	start := time.Now()
	for range n {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "t", Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	got := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			break
		}
		got++
	}
	if most := int(took/(10*time.Millisecond)) + 1; got > most || got == 0 {
		t.Errorf("%d transactions in %v sent %d notifications, want 1 to %d", n, took, got, most)
	}
}
