package pgxoutbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/pgxoutbox"
)

// TestListenerWakesAgainAfterANotification: a listener calls notify when it
// starts, for each notification, and twice more a moment after the last of
// them (Enqueue skips the NOTIFY of a transaction that follows another's
// closely, so the relay claims again for it), and goes on listening after
// those calls.
func TestListenerWakesAgainAfterANotification(t *testing.T) {
	db, _, _ := servers(t)
	s := newStore(t, db)
	l, err := pgxoutbox.NewListener(s, db)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- l.Listen(ctx, func() {
			mu.Lock()
			calls = append(calls, time.Now())
			mu.Unlock()
		})
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls)
	}
	waitFor := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); count() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("notify called %d times, want %d", count(), n)
			}
		}
	}
	waitFor(1) // listening
	for round := range 2 {
		if err := s.EnqueueWithoutTx(context.Background(), outbox.Message{Topic: "t", Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		want := 1 + 3*round + 3 // the notification, then two more calls
		waitFor(want)
		time.Sleep(200 * time.Millisecond)
		if n := count(); n != want {
			t.Fatalf("round %d: notify called %d times, want %d: once for the notification and twice more", round, n, want)
		}
		time.Sleep(20 * time.Millisecond) // past the store's debounce
	}
	cancel()
	if err := <-done; err == nil {
		t.Error("Listen returned nil when its context ended")
	}
}

// TestListenerKeepsNotificationsToItself: the listener's own connection
// takes its notifications; none is buffered on the pool connection whose
// settings it copied (there they would pile up for as long as the pool
// keeps that connection, and two listeners copying one connection would
// write to that buffer at once).
func TestListenerKeepsNotificationsToItself(t *testing.T) {
	_, _, url := servers(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the listener copies the settings of this one connection
	s := newStore(t, db)
	l, err := pgxoutbox.NewListener(s, db)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Listen(ctx, func() { calls.Add(1) }) }()
	for deadline := time.Now().Add(30 * time.Second); calls.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not listening after 30s")
		}
	}
	if _, err := db.Exec("SELECT pg_notify($1, '')", s.Table()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); calls.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the notification did not reach the listener in 30s")
		}
	}
	cancel()
	<-done
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Raw(func(driverConn any) error {
		wctx, wcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer wcancel()
		n, err := driverConn.(*stdlib.Conn).Conn().WaitForNotification(wctx)
		if err == nil {
			return fmt.Errorf("the pool's connection holds notification %q, received by the listener's", n.Channel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
