package idempotency_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

func newStore(t testing.TB, opts ...idempotency.Option) *idempotency.MemoryStore {
	t.Helper()
	s, err := idempotency.NewMemoryStore(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var errStoreDown = errors.New("store down")

// faultyStore wraps a Store, counts its calls and fails those told to fail.
type faultyStore struct {
	idempotency.Store

	claims, completes, releases atomic.Int64

	mu          sync.Mutex
	failClaim   bool
	failGet     bool
	failN       int // Complete fails this many times
	failRelease bool
	failRenew   bool
}

func (s *faultyStore) Renew(ctx context.Context, key string, token int64, lease time.Duration) error {
	s.mu.Lock()
	fail := s.failRenew
	s.mu.Unlock()
	if fail {
		return errStoreDown
	}
	return s.Store.Renew(ctx, key, token, lease)
}

func (s *faultyStore) Claim(ctx context.Context, key, fp string, lease time.Duration) (idempotency.Claim, error) {
	s.claims.Add(1)
	s.mu.Lock()
	fail := s.failClaim
	s.mu.Unlock()
	if fail {
		return idempotency.Claim{}, errStoreDown
	}
	return s.Store.Claim(ctx, key, fp, lease)
}

func (s *faultyStore) Get(ctx context.Context, key string) (idempotency.Record, error) {
	s.mu.Lock()
	fail := s.failGet
	s.mu.Unlock()
	if fail {
		return idempotency.Record{}, errStoreDown
	}
	return s.Store.Get(ctx, key)
}

func (s *faultyStore) Complete(ctx context.Context, key string, token int64, resp []byte, retention time.Duration) error {
	s.completes.Add(1)
	s.mu.Lock()
	fail := s.failN > 0
	if fail {
		s.failN--
	}
	s.mu.Unlock()
	if fail {
		return errStoreDown
	}
	return s.Store.Complete(ctx, key, token, resp, retention)
}

func (s *faultyStore) Release(ctx context.Context, key string, token int64) error {
	s.releases.Add(1)
	s.mu.Lock()
	fail := s.failRelease
	s.mu.Unlock()
	if fail {
		return errStoreDown
	}
	return s.Store.Release(ctx, key, token)
}

// fakeTxStore is a TxStore over a MemoryStore. Its transactions collect the
// caller's writes, which become visible in committed only when the
// transaction commits.
type fakeTxStore struct {
	*idempotency.MemoryStore

	mu        sync.Mutex
	committed []string
	rollbacks int
}

var _ idempotency.TxStore = (*fakeTxStore)(nil)

func (s *fakeTxStore) BeginTx(ctx context.Context, key, fp string, lease time.Duration) (idempotency.ClaimTx, idempotency.Claim, error) {
	if key == "" {
		return &fakeTx{store: s}, idempotency.Claim{}, nil
	}
	c, err := s.Claim(ctx, key, fp, lease)
	if err != nil || !c.Acquired {
		return nil, c, err
	}
	return &fakeTx{store: s, key: key, token: c.Token}, c, nil
}

func (s *fakeTxStore) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.committed...)
}

func (s *fakeTxStore) rolledBack() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rollbacks
}

// fakeTx is the transaction of fakeTxStore; the work writes with Write.
// Discarding rolls its writes back.
type fakeTx struct {
	store  *fakeTxStore
	key    string
	token  int64
	mu     sync.Mutex
	writes []string
	done   bool
}

// SQL returns nil: the fake has no database.
func (tx *fakeTx) SQL() *sql.Tx { return nil }

// Write records a business write in the transaction.
func (tx *fakeTx) Write(s string) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.writes = append(tx.writes, s)
}

func (tx *fakeTx) end() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.done {
		return errors.New("fakeTx: already ended")
	}
	tx.done = true
	return nil
}

func (tx *fakeTx) Commit(ctx context.Context, response []byte, retention time.Duration, discard bool) error {
	if err := tx.end(); err != nil {
		return err
	}
	if discard {
		tx.writes = nil
	}
	if tx.key != "" {
		if err := tx.store.Complete(ctx, tx.key, tx.token, response, retention); err != nil {
			return err
		}
	}
	tx.store.mu.Lock()
	defer tx.store.mu.Unlock()
	tx.store.committed = append(tx.store.committed, tx.writes...)
	return nil
}

func (tx *fakeTx) Rollback(ctx context.Context) error {
	if err := tx.end(); err != nil {
		return err
	}
	tx.store.mu.Lock()
	tx.store.rollbacks++
	tx.store.mu.Unlock()
	if tx.key == "" {
		return nil
	}
	return tx.store.Release(ctx, tx.key, tx.token)
}

// txWrite writes s in the transaction that ctx carries, or fails the test.
func txWrite(t *testing.T, ctx context.Context, s string) {
	tx, ok := idempotency.ClaimTxFrom(ctx).(*fakeTx)
	if !ok {
		t.Errorf("the context carries %T; want the store's *fakeTx", idempotency.ClaimTxFrom(ctx))
		return
	}
	tx.Write(s)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// problemDetails is the body of a problem response (RFC 9457).
type problemDetails struct {
	Type   idempotency.Problem `json:"type"`
	Title  string              `json:"title"`
	Status int                 `json:"status"`
	Detail string              `json:"detail,omitempty"`
}

func isFinal(err error) bool {
	var f *idempotency.FinalError
	return errors.As(err, &f)
}
