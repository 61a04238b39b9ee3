package outboxtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
)

// Harness is one fresh, empty outbox for one test: the suite calls the
// constructor given to Run once per test, and every test may run in
// parallel with the others, so each Harness needs a storage of its own (a
// table, a schema, a file).
type Harness struct {
	// Store is the store under test. Required.
	Store outbox.Store
	// Begin opens a transaction of the backend in which Tx.Enqueue writes.
	// Required.
	Begin func(ctx context.Context) (Tx, error)
	// Corrupt writes headers as the stored headers of the message with the
	// given id, behind the API's back and without any validation, as a row
	// damaged in the database or written by another program would read.
	// With nil headers it damages them so that they cannot be read at all
	// (invalid JSON, for a store that encodes them as JSON). A nil Corrupt
	// skips the tests of malformed rows.
	Corrupt func(ctx context.Context, id string, headers map[string]string) error
	// SingleWriter says that the backend admits one write transaction at a
	// time (SQLite): the tests that keep a transaction open while others
	// commit are skipped.
	SingleWriter bool
	// RelayOptions are added to the options of every relay the suite
	// starts, such as outbox.WithNotifier.
	RelayOptions []outbox.Option
	// DeletesDelivered says that the store deletes a message when its
	// delivery is written back (Get then reports ErrNotFound, and Cleanup
	// finds no delivered message), as sqloutbox does unless told to keep
	// them.
	DeletesDelivered bool
}

// Tx is a transaction of the backend under test.
type Tx interface {
	Enqueue(ctx context.Context, msgs ...outbox.Message) error
	Commit() error
	Rollback() error
}

// Recorder is an outbox.Publisher that records every delivery, and lets a
// test decide each publish's result. It is safe for concurrent use.
type Recorder struct {
	// Fail, when not nil, is called for every publish; its error is the
	// publish's result.
	Fail func(ctx context.Context, d outbox.Delivery) error

	mu    sync.Mutex
	calls []outbox.Delivery // every publish, failed or not
	ok    []outbox.Delivery // successful publishes
	wake  chan struct{}
}

// Publish implements outbox.Publisher.
func (r *Recorder) Publish(ctx context.Context, d outbox.Delivery) error {
	var err error
	if r.Fail != nil {
		err = r.Fail(ctx, d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, d)
	if err == nil {
		r.ok = append(r.ok, d)
	}
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	return err
}

// Delivered returns the successful publishes so far, in the order they
// happened.
func (r *Recorder) Delivered() []outbox.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]outbox.Delivery(nil), r.ok...)
}

// Calls returns every publish so far, failed or not.
func (r *Recorder) Calls() []outbox.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]outbox.Delivery(nil), r.calls...)
}

// WaitFor waits until the recorder has at least n successful deliveries,
// and fails the test when that has not happened within d.
func (r *Recorder) WaitFor(t testing.TB, d time.Duration, n int) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got := len(r.ok)
		var ch chan struct{}
		if got < n {
			if r.wake == nil {
				r.wake = make(chan struct{})
			}
			ch = r.wake
		}
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%d of %d deliveries within %v", got, n, d)
		}
	}
}
