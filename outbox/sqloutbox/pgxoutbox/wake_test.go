package pgxoutbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
