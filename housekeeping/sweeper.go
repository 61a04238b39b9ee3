package housekeeping

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast"
)

// Sweeper removes rows past their time from the stores its options name,
// one pass per interval across all replicas. Make one per process with New,
// call Migrate once, then Start; Stop it at shutdown. Its methods are safe
// for concurrent use.
type Sweeper struct {
	db      *sql.DB
	dialect steadfast.Dialect
	cfg     config
	q       queries
	owner   string
	log     *slog.Logger
	m       *metrics

	pass sync.Mutex // one pass at a time in this process

	life   sync.Mutex
	state  int // 0 new, 1 started, 2 stopped
	cancel context.CancelFunc
	ended  chan struct{}
}

// errLeaseLost ends a pass whose lease another replica took.
var errLeaseLost = errors.New("housekeeping: the lease was taken over by another replica")

// New returns a Sweeper that keeps its lease in db (a table of its own, see
// Migrate), for the stores named by its options. It starts nothing. db is
// the database of dialect d (steadfast.Postgres, steadfast.SQLite or
// steadfast.MySQL); the stores may live in other databases. It
// returns an error for a nil db, an unknown dialect, no store to sweep, and
// one naming the option at fault for an invalid option.
func New(db *sql.DB, d steadfast.Dialect, opts ...Option) (*Sweeper, error) {
	if db == nil {
		return nil, errors.New("housekeeping: New: db is nil")
	}
	cfg := defaults()
	if err := applyOptions(&cfg, opts); err != nil {
		return nil, err
	}
	if len(cfg.tasks) == 0 {
		return nil, errors.New("housekeeping: New: nothing to sweep: give at least one of WithIdempotency, WithInbox, WithOutbox, WithDeadLetters, WithOrderingGuard, WithCatchup")
	}
	q, err := newQueries(d, cfg.table)
	if err != nil {
		return nil, fmt.Errorf("housekeeping: New: %w", err)
	}
	m, err := newMetrics(cfg.meter)
	if err != nil {
		return nil, fmt.Errorf("housekeeping: New: metrics: %w", err)
	}
	return &Sweeper{db: db, dialect: d, cfg: cfg, q: q, owner: ownerID(), log: cfg.logger, m: m}, nil
}

// ownerID names this Sweeper in the lease row: host, process and a random
// part, so that two Sweepers of one process are two owners.
func ownerID() string {
	host, _ := os.Hostname()
	if len(host) > 100 {
		host = host[:100]
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

// Start runs a pass now and then one per interval (WithInterval), in a
// goroutine of its own, until Stop; it returns at once. ctx's values (not
// its cancellation) are passed to the stores. Calling Start on a running
// Sweeper does nothing; after Stop it returns an error.
func (s *Sweeper) Start(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	switch s.state {
	case 1:
		return nil
	case 2:
		return errors.New("housekeeping: Start after Stop")
	}
	for _, t := range s.cfg.tasks {
		if t.kind == kindGuard {
			s.log.Warn("housekeeping: ordering-guard rows are removed: a stale event arriving later than the retention after its entity's last change will be applied as new",
				"retention", t.retention)
		}
	}
	loop, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.ended, s.state = cancel, make(chan struct{}), 1
	go s.loop(loop)
	return nil
}

func (s *Sweeper) loop(ctx context.Context) {
	defer close(s.ended)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _ = s.Sweep(ctx)
		t.Reset(s.cfg.interval)
	}
}

// Stop ends the loop that Start began, cutting a pass in progress short
// (each batch is its own statement: what was removed stays removed, the rest
// waits for the next pass), and returns when it has ended, or ctx's error
// if ctx ends first. A lease held by a pass cut short runs out after
// WithLease's duration, and another replica takes over. Stop on a Sweeper
// never started, or stopped already, returns nil.
func (s *Sweeper) Stop(ctx context.Context) error {
	s.life.Lock()
	state := s.state
	s.state = 2
	s.life.Unlock()
	if state != 1 {
		if state == 2 && s.ended != nil {
			select {
			case <-s.ended:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	s.cancel()
	select {
	case <-s.ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sweep runs one pass now, if no other replica holds the lease, and returns
// how many rows it removed. A replica that holds the lease keeps it until
// the next pass is due (WithInterval), so Sweep on another replica before
// then removes nothing and returns 0 and no error. Use it where no process
// runs long (from cron), or to sweep at once. A store that fails does not
// keep the others from being swept; the error joins every failure.
func (s *Sweeper) Sweep(ctx context.Context) (int64, error) {
	s.pass.Lock()
	defer s.pass.Unlock()
	start := time.Now()
	held, err := s.take(ctx)
	if err != nil {
		s.m.pass(ctx, outcomeFailed)
		s.log.Warn("housekeeping: cannot take the lease", "error", err)
		return 0, fmt.Errorf("housekeeping: take the lease: %w", err)
	}
	if !held {
		s.m.pass(ctx, outcomeSkipped)
		s.log.Debug("housekeeping: another replica holds the lease")
		return 0, nil
	}
	var total int64
	var errs []error
	counts := make([]any, 0, 2*len(s.cfg.tasks))
	for _, t := range s.cfg.tasks {
		n, err := s.sweepTask(ctx, t)
		total += n
		counts = append(counts, t.kind, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("housekeeping: %s: %w", t.kind, err))
			if errors.Is(err, errLeaseLost) || ctx.Err() != nil {
				break
			}
		}
	}
	err = errors.Join(errs...)
	switch {
	case errors.Is(err, errLeaseLost):
		s.m.pass(ctx, outcomeLost)
		s.log.Warn("housekeeping: pass cut short: another replica took the lease (is WithLease shorter than a batch?)",
			append(counts, "removed", total)...)
		return total, err
	case err != nil && ctx.Err() != nil:
		s.log.Info("housekeeping: pass cut short (stopping)", append(counts, "removed", total)...)
		return total, err
	case err != nil:
		s.m.pass(ctx, outcomeFailed)
		s.log.Warn("housekeeping: pass failed", append(counts, "removed", total, "error", err)...)
	default:
		s.m.pass(ctx, outcomeSwept)
		level := slog.LevelDebug
		if total > 0 {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "housekeeping: pass done", append(counts, "removed", total, "took", time.Since(start).Round(time.Millisecond))...)
	}
	if ctx.Err() == nil {
		if derr := s.done(ctx, total); derr != nil {
			err = errors.Join(err, fmt.Errorf("housekeeping: record the pass: %w", derr))
		}
	}
	return total, err
}

// sweepTask removes t's rows batch by batch while batches come back full,
// renewing the lease after each full batch.
func (s *Sweeper) sweepTask(ctx context.Context, t task) (int64, error) {
	var total int64
	for {
		n, err := t.purge(ctx, s.cfg.batch)
		if n > 0 {
			total += n
			s.m.removed(ctx, t.kind, n)
		}
		if err != nil {
			return total, err
		}
		if n < int64(s.cfg.batch) {
			return total, nil
		}
		held, err := s.renew(ctx)
		if err != nil {
			return total, fmt.Errorf("renew the lease: %w", err)
		}
		if !held {
			return total, errLeaseLost
		}
	}
}
