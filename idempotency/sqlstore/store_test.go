package sqlstore_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

const (
	lease     = time.Minute
	retention = 24 * time.Hour
)

// short is the lease or retention of the tests about expiry, which sleep
// past it: the database's clock keeps time.
const short = 300 * time.Millisecond

func TestLifecycle(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)

		c, err := s.Claim(ctx, "k", "fp", lease)
		if err != nil || !c.Acquired || c.Token == 0 {
			t.Fatalf("first claim = %+v, %v; want acquired", c, err)
		}
		dup, err := s.Claim(ctx, "k", "fp", lease)
		if err != nil || dup.Acquired || dup.Record.Status != idempotency.StatusInProgress {
			t.Fatalf("duplicate claim = %+v, %v; want in progress", dup, err)
		}
		if ttl := dup.Record.TTL; ttl <= lease-10*time.Second || ttl > lease {
			t.Errorf("lease left %v, want about %v", ttl, lease)
		}
		if err := s.Renew(ctx, "k", c.Token, lease); err != nil {
			t.Fatalf("renew: %v", err)
		}
		if err := s.Renew(ctx, "k", c.Token+1, lease); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("renew with wrong token = %v, want ErrLeaseLost", err)
		}
		if err := s.Complete(ctx, "k", c.Token+1, []byte("x"), retention); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("complete with wrong token = %v, want ErrLeaseLost", err)
		}
		resp := []byte("status 201\x00binary\xff")
		if err := s.Complete(ctx, "k", c.Token, resp, short); err != nil {
			t.Fatalf("complete: %v", err)
		}
		if err := s.Complete(ctx, "k", c.Token, resp, retention); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("second complete = %v, want ErrLeaseLost", err)
		}
		replay, err := s.Claim(ctx, "k", "fp", lease)
		if err != nil || replay.Acquired || replay.Record.Status != idempotency.StatusCompleted || !bytes.Equal(replay.Record.Response, resp) {
			t.Fatalf("claim after complete = %+v, %v; want completed record", replay, err)
		}
		rec, err := s.Get(ctx, "k")
		if err != nil || !bytes.Equal(rec.Response, resp) || rec.Fingerprint != "fp" || rec.Key != "k" {
			t.Fatalf("get = %+v, %v", rec, err)
		}
		if rec.TTL <= 0 || rec.TTL > short {
			t.Errorf("retention left %v, want in (0, %v]", rec.TTL, short)
		}
		if _, err := s.Get(ctx, "K"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("get of other-case key = %v, want ErrNotFound (keys are case-sensitive)", err)
		}

		time.Sleep(short)
		if _, err := s.Get(ctx, "k"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("get after retention = %v, want ErrNotFound", err)
		}
		again, err := s.Claim(ctx, "k", "other", lease)
		if err != nil || !again.Acquired || again.Token == c.Token {
			t.Fatalf("claim after retention = %+v, %v; want a fresh claim", again, err)
		}
		if err := s.Release(ctx, "k", again.Token); err != nil {
			t.Fatalf("release: %v", err)
		}
		if err := s.Release(ctx, "k", again.Token); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("second release = %v, want ErrLeaseLost", err)
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("get after release = %v, want ErrNotFound", err)
		}
	})
}

func TestTakeover(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)

		old, err := s.Claim(ctx, "k", "fp", short)
		if err != nil || !old.Acquired {
			t.Fatalf("claim = %+v, %v", old, err)
		}
		if c, _ := s.Claim(ctx, "k", "fp", lease); c.Acquired {
			t.Fatal("claim taken over before the lease ended")
		}
		time.Sleep(short)
		mismatch, err := s.Claim(ctx, "k", "different", lease)
		if err != nil || mismatch.Acquired || mismatch.Record.Fingerprint != "fp" {
			t.Fatalf("claim with another fingerprint = %+v, %v; want the record untouched", mismatch, err)
		}
		taken, err := s.Claim(ctx, "k", "fp", lease)
		if err != nil || !taken.Acquired || taken.Token == old.Token {
			t.Fatalf("takeover = %+v, %v; want a new token", taken, err)
		}
		for name, op := range map[string]func() error{
			"renew":    func() error { return s.Renew(ctx, "k", old.Token, lease) },
			"complete": func() error { return s.Complete(ctx, "k", old.Token, []byte("late"), retention) },
			"release":  func() error { return s.Release(ctx, "k", old.Token) },
		} {
			if err := op(); !errors.Is(err, idempotency.ErrLeaseLost) {
				t.Errorf("old owner's %s = %v, want ErrLeaseLost", name, err)
			}
		}
		if err := s.Complete(ctx, "k", taken.Token, []byte("new"), retention); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(ctx, "k")
		if err != nil || string(rec.Response) != "new" {
			t.Fatalf("get = %+v, %v; want the new owner's response", rec, err)
		}
	})
}

func TestAbandonedClaimExpires(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 2, sqlstore.WithAbandonedRetention(short))
		if c, err := s.Claim(ctx, "k", "fp", short); err != nil || !c.Acquired {
			t.Fatalf("claim = %+v, %v", c, err)
		}
		time.Sleep(2 * short)
		if _, err := s.Get(ctx, "k"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("get of abandoned claim = %v, want ErrNotFound", err)
		}
		if rec, err := sqlstore.Lookup(ctx, s, "k"); err != nil || rec.Status != idempotency.StatusInProgress {
			t.Fatalf("lookup = %+v, %v; want the unpurged row", rec, err)
		}
		if c, err := s.Claim(ctx, "k", "another", lease); err != nil || !c.Acquired {
			t.Fatalf("claim with another fingerprint after abandonment = %+v, %v", c, err)
		}
	})
}

func TestBadInput(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 2, sqlstore.WithMaxResponseSize(16))
		long := strings.Repeat("k", 1024+1)
		tests := []struct {
			name string
			err  error
			want error
		}{
			{"empty key", claimErr(s.Claim(ctx, "", "fp", lease)), idempotency.ErrInvalid},
			{"long key", claimErr(s.Claim(ctx, long, "fp", lease)), idempotency.ErrTooLarge},
			{"long fingerprint", claimErr(s.Claim(ctx, "k", long, lease)), idempotency.ErrTooLarge},
			{"zero lease", claimErr(s.Claim(ctx, "k", "fp", 0)), idempotency.ErrInvalid},
			{"get long key", getErr(s.Get(ctx, long)), idempotency.ErrTooLarge},
		}
		c, err := s.Claim(ctx, "k", "fp", lease)
		if err != nil || !c.Acquired {
			t.Fatalf("claim = %+v, %v", c, err)
		}
		tests = append(tests,
			struct {
				name string
				err  error
				want error
			}{"large response", s.Complete(ctx, "k", c.Token, make([]byte, 17), retention), idempotency.ErrTooLarge},
			struct {
				name string
				err  error
				want error
			}{"zero retention", s.Complete(ctx, "k", c.Token, nil, 0), idempotency.ErrInvalid},
		)
		for _, tt := range tests {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
			}
		}
		// Nothing was stored by the refused completions.
		rec, err := s.Get(ctx, "k")
		if err != nil || rec.Status != idempotency.StatusInProgress {
			t.Fatalf("record after refused completions = %+v, %v; want in progress", rec, err)
		}
		if err := s.Complete(ctx, "k", c.Token, make([]byte, 16), retention); err != nil {
			t.Fatalf("complete at the limit: %v", err)
		}
	})
}

func claimErr(_ idempotency.Claim, err error) error { return err }
func getErr(_ idempotency.Record, err error) error  { return err }

func TestConcurrentClaimsOneWinner(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 8)
		keys, callers := 50, 8
		if testing.Short() {
			keys = 10
		}
		for k := 0; k < keys; k++ {
			key := "key-" + strings.Repeat("x", k%3) + string(rune('a'+k%26)) + string(rune('0'+k/26))
			var won atomic.Int32
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for i := 0; i < callers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := s.Claim(ctx, key, "fp", lease)
					if err != nil {
						errs <- err
						return
					}
					if c.Acquired {
						won.Add(1)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("claim %s: %v", key, err)
			}
			if n := won.Load(); n != 1 {
				t.Fatalf("key %s: %d callers acquired it, want 1", key, n)
			}
		}
	})
}

func TestForceRelease(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 2)
		c, _ := s.Claim(ctx, "stuck", "fp", time.Hour)
		if err := s.ForceRelease(ctx, "stuck"); err != nil {
			t.Fatalf("force release: %v", err)
		}
		if err := s.Complete(ctx, "stuck", c.Token, nil, retention); !errors.Is(err, idempotency.ErrLeaseLost) {
			t.Fatalf("holder's complete after force release = %v, want ErrLeaseLost", err)
		}
		if err := s.ForceRelease(ctx, "stuck"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("second force release = %v, want ErrNotFound", err)
		}
		c2, err := s.Claim(ctx, "stuck", "fp", lease)
		if err != nil || !c2.Acquired {
			t.Fatalf("claim after force release = %+v, %v", c2, err)
		}
		if err := s.Complete(ctx, "stuck", c2.Token, []byte("done"), retention); err != nil {
			t.Fatal(err)
		}
		if err := s.ForceRelease(ctx, "stuck"); !errors.Is(err, idempotency.ErrNotFound) {
			t.Fatalf("force release of a completed record = %v, want ErrNotFound", err)
		}
		if rec, err := sqlstore.Lookup(ctx, s, "stuck"); err != nil || string(rec.Response) != "done" {
			t.Fatalf("lookup = %+v, %v", rec, err)
		}
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		s := newStore(t, d, 4)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = s.Migrate(ctx) }()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Migrate: %v", err)
			}
		}
	})
}

func TestNewValidatesOptions(t *testing.T) {
	t.Parallel()
	db := openDB(t, steadfast.SQLite, 1)
	tests := []struct {
		name string
		d    steadfast.Dialect
		opt  sqlstore.Option
		want string
	}{
		{"bad table", steadfast.SQLite, sqlstore.WithTable("drop table; --"), "sqlstore: New: WithTable: table name"},
		{"three parts", steadfast.SQLite, sqlstore.WithTable("a.b.c"), "WithTable"},
		{"long table", steadfast.SQLite, sqlstore.WithTable(strings.Repeat("a", 44)), "WithTable"},
		{"nil option", steadfast.SQLite, nil, "sqlstore: New: option 0 is nil"},
		{"zero response size", steadfast.SQLite, sqlstore.WithMaxResponseSize(0), "WithMaxResponseSize"},
		{"zero abandoned retention", steadfast.SQLite, sqlstore.WithAbandonedRetention(0), "WithAbandonedRetention"},
		{"zero attempts", steadfast.SQLite, sqlstore.WithRetryAttempts(0), "WithRetryAttempts"},
		{"unknown dialect", steadfast.Dialect(9), sqlstore.WithRetryAttempts(1), "unknown dialect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sqlstore.New(db, tt.d, tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestSchema(t *testing.T) {
	t.Parallel()
	db := openDB(t, steadfast.SQLite, 1)
	for _, d := range dialects {
		s, err := sqlstore.New(db, d, sqlstore.WithTable("my_idem"))
		if err != nil {
			t.Fatal(err)
		}
		sql := s.Schema()
		for _, want := range []string{"CREATE TABLE IF NOT EXISTS my_idem (", "my_idem_inbox", "my_idem_order"} {
			if !strings.Contains(sql, want) {
				t.Errorf("%v schema lacks %q", d, want)
			}
		}
		if strings.Contains(sql, "steadfast_idempotency") {
			t.Errorf("%v schema still names the default table", d)
		}
		def, err := sqlstore.New(db, d)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(def.Schema(), "CREATE TABLE IF NOT EXISTS steadfast_idempotency (") {
			t.Errorf("%v default schema lacks the default table", d)
		}
	}
	if _, err := sqlstore.New(db, steadfast.Postgres, sqlstore.WithTable("bad name")); err == nil {
		t.Error("New accepted a bad table name")
	}
}
