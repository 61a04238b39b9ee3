package idempotency

// The steps that Middleware and Do share: fingerprinting, storing a result
// with retries, waiting for a duplicate's result, and the context of the
// store calls made after the work ran.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// fingerprintBytes returns the hex SHA-256 of b.
func fingerprintBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fingerprintSum returns the SHA-256 of a request's method, target (the
// escaped path, then "?" and the query if there is one) and body, each but
// the last followed by a zero byte (which neither a method nor an escaped
// target contains).
func fingerprintSum(method, path, query string, body []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(path))
	if query != "" {
		h.Write([]byte{'?'})
		h.Write([]byte(query))
	}
	h.Write([]byte{0})
	h.Write(body)
	var sum [sha256.Size]byte
	h.Sum(sum[:0]) // appends into sum, which has the room
	return sum
}

// complete stores the result, retrying a failing store a few times within
// ctx. A lost lease, or a store that refuses the input for good
// (ErrTooLarge, ErrInvalid), is not retried.
func complete(ctx context.Context, store Store, key string, token int64, stored []byte, retention time.Duration) error {
	delay := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := store.Complete(ctx, key, token, stored, retention)
		if err == nil || permanent(err) || attempt == completeAttempts {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
}

// permanent reports whether a store's error will not change by trying
// again.
func permanent(err error) bool {
	return errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalid)
}

// refused reports whether a store refused the caller's input (the client's
// error, not an outage).
func refused(err error) bool {
	return errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalid)
}

// completeAttempts bounds the tries to store a result.
const completeAttempts = 4

// errClaimAgain tells a waiter that the key was released or abandoned.
var errClaimAgain = errors.New("idempotency: claim again")

// waitRecord polls the record of key, with backoff, while it is in progress
// under a live lease, until deadline (on this process's clock: it bounds
// this caller's own wait). It returns the record once it is completed or has
// another fingerprint than fp, errClaimAgain once the key is free or its
// lease has run out (as the store reckons it), or ErrInProgress at the
// deadline.
func waitRecord(ctx context.Context, store Store, key, fp string, deadline time.Time) (Record, error) {
	delay := 5 * time.Millisecond
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return Record{}, ErrInProgress
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return Record{}, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 250*time.Millisecond)
		rec, err := store.Get(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			return Record{}, errClaimAgain
		case err != nil:
			return Record{}, err
		case rec.Fingerprint != fp:
		case rec.Status == StatusInProgress && rec.TTL <= 0:
			// Its holder died, by the store's clock; the claim decides.
			return Record{}, errClaimAgain
		case rec.Status == StatusInProgress:
			continue
		}
		return rec, nil
	}
}

// afterWork returns the context of the store calls made after the work ran:
// detached from ctx, so that a caller that went away leaves no claim
// behind, and bounded by timeout. A MemoryStore never blocks, so it needs
// no deadline, and is spared the timer.
func afterWork(ctx context.Context, store Store, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := store.(*MemoryStore); ok {
		// It does not read ctx's values either.
		return context.Background(), func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// txContext returns the context of a transaction of transactional mode:
// detached from ctx, so that the commit of work that finished does not
// depend on the client, and bounded by maxTx.
func txContext(ctx context.Context, maxTx time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), maxTx)
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
