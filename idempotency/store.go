package idempotency

import (
	"context"
	"errors"
	"time"
)

// Store keeps one record per key: who holds the key now, and once the work is
// done, its stored result. Every method is safe for concurrent use, honours
// ctx, and is atomic with respect to the others on the same key. The memory
// store (NewMemoryStore) and the durable stores in idempotency/sqlstore and
// idempotency/redisstore implement it; idempotency/storetest checks any
// implementation.
//
// A claim is held under a lease. The holder renews it while it works; a lease
// that expired (its holder died) may be taken over by the next claimer. Every
// successful claim gets a fresh fencing token: Renew, Complete and Release
// succeed only with the token of the current claim, so a holder that lost its
// lease cannot overwrite the work of the one that took over.
//
// Time is the store's own: a store shared by several processes keeps leases
// and retention on its server's clock, never on a caller's, and reports what
// is left of them (Record.TTL) rather than instants.
//
// Limits, the same on every store: a key is 1 to 1024 bytes, a fingerprint
// at most 255 bytes, compared byte for byte; a longer one is refused with an
// error wrapping ErrTooLarge, an empty key or a non-positive lease or
// retention with one wrapping ErrInvalid. A store may bound the size of a
// response (ErrTooLarge), and documents its bound.
type Store interface {
	// Claim tries to take key for the duration of lease.
	//
	// If no record exists, or the record is in progress with an expired lease
	// and the same fingerprint, Claim takes it and returns Claim.Acquired with a
	// new token. Otherwise it returns the existing record untouched in
	// Claim.Record: a completed one (to replay), one in progress under a live
	// lease, or one whose fingerprint differs from fingerprint (a mismatch is
	// never taken over).
	//
	// It returns ErrStoreFull when a store with bounded capacity cannot hold a
	// new record.
	Claim(ctx context.Context, key, fingerprint string, lease time.Duration) (Claim, error)

	// Renew extends the lease of the claim that holds token to lease from now.
	// It returns ErrLeaseLost if key is no longer held with token.
	Renew(ctx context.Context, key string, token int64, lease time.Duration) error

	// Complete stores response as the final result of key and keeps it for
	// retention. It returns ErrLeaseLost if key is no longer held with token,
	// and then stores nothing.
	Complete(ctx context.Context, key string, token int64, response []byte, retention time.Duration) error

	// Release removes the claim that holds token, so that the next claimer runs
	// the work again. It returns ErrLeaseLost if key is no longer held with
	// token.
	Release(ctx context.Context, key string, token int64) error

	// Get returns the record of key, or ErrNotFound if there is none or it has
	// expired.
	Get(ctx context.Context, key string) (Record, error)
}

// Claim is the outcome of Store.Claim.
type Claim struct {
	// Acquired is true when the caller now holds the key.
	Acquired bool
	// Token is the fencing token of the caller's claim when Acquired.
	Token int64
	// Record is the existing record when not Acquired.
	Record Record
}

// Status is the state of a record.
type Status uint8

const (
	// StatusInProgress means the key is claimed and its work has not finished.
	StatusInProgress Status = iota + 1
	// StatusCompleted means the work finished and Record.Response holds its result.
	StatusCompleted
)

// String returns "in_progress" or "completed".
func (s Status) String() string {
	switch s {
	case StatusInProgress:
		return "in_progress"
	case StatusCompleted:
		return "completed"
	default:
		return "unknown"
	}
}

// Record is what a store keeps for one key.
type Record struct {
	// Key is the record's key, as given to Claim.
	Key string
	// Fingerprint is the fingerprint given by the first claimer.
	Fingerprint string
	// Status tells whether the work is in progress or completed.
	Status Status
	// Token is the fencing token of the current (or completing) claim.
	Token int64
	// TTL is what is left, as the store reckoned it on its own clock when
	// it read the record: of the lease while the record is in progress (0
	// once the lease ran out: its holder died and the key may be taken
	// over), of the retention once it is completed. Callers never compare a
	// store's time with their own clock.
	TTL time.Duration
	// Response is the stored result of a completed record.
	Response []byte
}

var (
	// ErrLeaseLost is returned by Renew, Complete and Release when the caller
	// no longer holds the key: its lease expired and another claimer took it,
	// or the record was released or completed.
	ErrLeaseLost = errors.New("idempotency: lease lost")
	// ErrNotFound is returned by Get when a key has no live record.
	ErrNotFound = errors.New("idempotency: record not found")
	// ErrStoreFull is returned by Claim when a store with bounded capacity
	// cannot hold another record.
	ErrStoreFull = errors.New("idempotency: store full")
	// ErrTooLarge is returned, wrapped with the sizes, by every store for a
	// key, fingerprint or response longer than it holds (see Store), and by
	// the SQL store's inbox and ordering guard. Nothing is written. The
	// middleware answers it as the client's error, never as a store outage.
	ErrTooLarge = errors.New("idempotency: value too large")
	// ErrInvalid is returned, wrapped with the reason, for input that no
	// store could hold: an empty key, a non-positive lease or retention; and
	// by a KeySource for a key that is malformed, too long or given more than
	// once. The middleware answers it 400.
	ErrInvalid = errors.New("idempotency: invalid input")
)

// The limits of Store, which every store holds to.
const (
	maxStoreKey         = 1024
	maxStoreFingerprint = 255
)
