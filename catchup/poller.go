package catchup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/retry"
)

// Poller reads a provider's list of events from a durable cursor and applies
// each event it finds not yet applied, through the same inbox as the
// webhooks (WebhookHandler): an event is applied once, by whichever path
// comes first.
//
// A pass reads pages until the list has no more. Each page is applied in one
// transaction: for each event, its id is marked in the inbox and, the first
// time, the handler runs; then the cursor advances, in the same transaction,
// to a cursor that trails the newest event by the overlap window (WithOverlap,
// WithOverlapEvents), so that events the list shows late are read again and
// not skipped. When a handler fails, the events before the failing one are
// applied without it; the failing event is retried at the next passes (the
// cursor stays before it) and, after the maximum of attempts, becomes a dead
// letter and the cursor moves past it. An event refused for good (see
// DeadLetter.Refused) becomes a dead letter at once.
//
// Among all replicas that run a poller for one source, one polls: the one
// holding the source's lease, kept in the store on the database's clock. The
// others check every third of the lease and take over once it ran out.
//
// A Poller is safe for concurrent use. Start starts it; Stop stops it.
type Poller struct {
	name  string
	src   Source
	store Store
	inbox Inbox
	fn    HandlerFunc
	cfg   config
	log   *slog.Logger
	m     *metrics
	owner string

	held    atomic.Bool
	failing map[string]bool // ids with failed attempts recorded; the run goroutine's

	life    sync.Mutex
	state   int // 0 new, 1 started, 2 stopped
	soft    context.CancelFunc
	hard    context.CancelFunc
	done    chan struct{}
	stopped chan struct{}
}

// NewPoller returns a poller for the source named source (the key of its
// cursor and lease in store: 1 to 255 bytes of UTF-8 without NUL), reading
// src, marking event ids in inbox and applying new events with fn. It
// starts nothing and touches no database. It returns an error for a nil or
// invalid argument and one naming the option at fault.
func NewPoller(source string, src Source, store Store, inbox Inbox, fn HandlerFunc, opts ...Option) (*Poller, error) {
	switch {
	case !validName(source):
		return nil, fmt.Errorf("catchup: NewPoller: source name %.40q must be 1 to 255 bytes of UTF-8 without NUL", source)
	case isNil(src):
		return nil, errors.New("catchup: NewPoller: nil Source")
	case isNil(store):
		return nil, errors.New("catchup: NewPoller: nil Store")
	case isNil(inbox):
		return nil, errors.New("catchup: NewPoller: nil Inbox")
	case fn == nil:
		return nil, errors.New("catchup: NewPoller: nil HandlerFunc")
	}
	cfg := defaults()
	if err := applyOptions(ctorPoller, &cfg, opts); err != nil {
		return nil, err
	}
	if cfg.interval >= cfg.lease {
		switch {
		case cfg.intervalSet && cfg.leaseSet:
			return nil, fmt.Errorf("catchup: NewPoller: WithPollInterval %v must be shorter than WithLease %v", cfg.interval, cfg.lease)
		case cfg.intervalSet:
			return nil, fmt.Errorf("catchup: NewPoller: WithPollInterval %v must be shorter than the lease (%v, WithLease's default)", cfg.interval, cfg.lease)
		default:
			return nil, fmt.Errorf("catchup: NewPoller: WithLease %v must be longer than the poll interval (%v, WithPollInterval's default)", cfg.lease, cfg.interval)
		}
	}
	if cfg.consumer == "" {
		cfg.consumer = source
	}
	if cfg.retry == nil {
		pol, err := retry.New()
		if err != nil {
			return nil, fmt.Errorf("catchup: NewPoller: default retry policy: %w", err)
		}
		cfg.retry = pol
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.meter == nil {
		cfg.meter = otel.GetMeterProvider()
	}
	m, err := newMetrics(cfg.meter, source)
	if err != nil {
		return nil, fmt.Errorf("catchup: NewPoller: metrics: %w", err)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return &Poller{
		name: source, src: src, store: store, inbox: inbox, fn: fn, cfg: cfg, m: m,
		log:     cfg.logger.With("source", source),
		owner:   hex.EncodeToString(b[:]),
		failing: map[string]bool{},
		stopped: make(chan struct{}),
	}, nil
}

// Start starts polling in the background; ctx's values are kept, its
// cancellation is not (use Stop). Start is idempotent; it returns an error
// after Stop.
func (p *Poller) Start(ctx context.Context) error {
	if p == nil {
		return errors.New("catchup: Start: nil *Poller")
	}
	p.life.Lock()
	defer p.life.Unlock()
	switch p.state {
	case 1:
		return nil
	case 2:
		return errors.New("catchup: Start: the poller was stopped")
	}
	base := context.WithoutCancel(ctx)
	soft, softCancel := context.WithCancel(base)
	hard, hardCancel := context.WithCancel(base)
	p.soft, p.hard, p.done, p.state = softCancel, hardCancel, make(chan struct{}), 1
	go func() {
		defer close(p.done)
		p.run(soft, hard)
	}()
	return nil
}

// Stop stops the poller: it lets the page being applied commit, then gives
// up the lease so that another replica takes over at once. When ctx ends
// first, the page's transaction is rolled back (nothing is lost: the cursor
// had not moved) and Stop returns ctx's error once the poller has stopped.
// Stop is idempotent and safe to call before Start.
func (p *Poller) Stop(ctx context.Context) error {
	if p == nil {
		return errors.New("catchup: Stop: nil *Poller")
	}
	p.life.Lock()
	switch p.state {
	case 0:
		p.state = 2
		close(p.stopped)
		p.life.Unlock()
		return nil
	case 2:
		p.life.Unlock()
		select {
		case <-p.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.state = 2
	p.life.Unlock()
	defer close(p.stopped)
	p.soft()
	var err error
	select {
	case <-p.done:
	case <-ctx.Done():
		err = ctx.Err()
		p.hard()
		<-p.done
	}
	p.hard()
	return err
}

func (p *Poller) run(soft, hard context.Context) {
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(hard), 5*time.Second)
		defer cancel()
		if p.held.Load() {
			if err := p.store.Release(ctx, p.name, p.owner); err != nil {
				p.log.Warn("catchup: releasing the lease", "err", err)
			}
		}
	}()
	for {
		wait := p.pass(soft, hard)
		t := time.NewTimer(wait)
		select {
		case <-soft.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// handlerError is a handler's error, told apart from the store's.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

// refusal is why an event is refused for good (DeadLetter.Refused).
type refusal struct{ err error }

func (e *refusal) Error() string { return e.err.Error() }
func (e *refusal) Unwrap() error { return e.err }

// refusedByInbox reports an inbox's error that refuses the id for good.
func refusedByInbox(err error) bool {
	return errors.Is(err, idempotency.ErrInvalid) || errors.Is(err, idempotency.ErrTooLarge)
}

// maxFailing bounds the ids of failing events a pass reads.
const maxFailing = 1000

// pass runs one pass and returns how long to wait before the next.
func (p *Poller) pass(soft, hard context.Context) time.Duration {
	cursor, held, err := p.store.Lease(hard, p.name, p.owner, p.cfg.lease)
	if err != nil {
		p.log.Warn("catchup: taking the lease", "err", err)
		return p.cfg.interval
	}
	if !held {
		if p.held.Swap(false) {
			p.log.Info("catchup: lease lost to another replica")
		}
		return p.cfg.lease / 3
	}
	if !p.held.Swap(true) {
		p.log.Info("catchup: lease taken; polling", "cursor", cursor)
	}
	if from, ok := skipping(cursor); ok {
		return p.skip(soft, hard, cursor, from)
	}
	if err := p.loadFailing(hard); err != nil {
		return p.failed(err)
	}
	if err := p.requeued(hard); err != nil {
		return p.failed(err)
	}
	tr := newTrail(cursor, p.cfg.overlapCount, p.cfg.overlap)
	next := cursor
	for soft.Err() == nil {
		page, err := p.list(soft, next)
		if err != nil {
			return p.failed(err)
		}
		p.m.pages.Add(hard, 1, p.m.source)
		p.identify(page.Events)
		if err := p.apply(hard, &tr, page.Events); err != nil {
			return p.failed(err)
		}
		if !tr.newest.IsZero() {
			p.m.lag.Record(hard, time.Since(tr.newest).Seconds(), p.m.source)
		}
		if !page.More || page.Next == "" || page.Next == next {
			break // the end, or a source that makes no progress
		}
		next = page.Next
	}
	return p.cfg.interval
}

// list fetches the page after cursor through the retry policy. Stop cuts a
// fetch short (nothing is lost), not a page's transaction: ctx is the soft
// context.
func (p *Poller) list(ctx context.Context, cursor string) (Page, error) {
	var page Page
	err := retry.Do(ctx, p.cfg.retry, func(ctx context.Context) error {
		var err error
		page, err = p.src.List(ctx, cursor)
		return err
	})
	if err != nil {
		return Page{}, fmt.Errorf("catchup: listing events after %.80q: %w", cursor, err)
	}
	return page, nil
}

// skipping reports whether cursor asks for a skip to the end of the list
// (Now), and the cursor to read from.
func skipping(cursor string) (from string, ok bool) {
	rest, ok := strings.CutPrefix(cursor, Now)
	switch {
	case !ok:
		return "", false
	case rest == "":
		return "", true
	}
	return strings.CutPrefix(rest, ":")
}

// skip reads the list from the cursor from to its end without applying
// anything, and stores the cursor of the last event read (an operator
// stored Now). The lease is renewed with each page; when an operator stored
// another cursor meanwhile, the skip is given up.
func (p *Poller) skip(soft, hard context.Context, stored, from string) time.Duration {
	end, next := from, from
	var newest time.Time
	for {
		page, err := p.list(soft, next)
		if err != nil {
			return p.failed(err)
		}
		p.m.pages.Add(hard, 1, p.m.source)
		for _, ev := range page.Events {
			if ev.Cursor != "" && storableCursor(ev.Cursor) {
				end = ev.Cursor
			}
			if c := created(ev); c.After(newest) {
				newest = c
			}
		}
		if !page.More || page.Next == "" || page.Next == next {
			break
		}
		next = page.Next
		cursor, held, err := p.store.Lease(hard, p.name, p.owner, p.cfg.lease)
		switch {
		case err != nil:
			return p.failed(err)
		case !held:
			return p.failed(fmt.Errorf("catchup: skipping to the end of the list: %w", ErrLeaseLost))
		case cursor != stored:
			p.log.Info("catchup: skip to the end given up: another cursor was stored", "cursor", cursor)
			return p.cfg.interval
		case soft.Err() != nil:
			return p.cfg.interval
		}
	}
	err := p.retryTx(hard, func(ctx context.Context, tx steadfast.Tx) error {
		return p.store.Advance(ctx, tx, p.name, p.owner, end, newest, p.cfg.lease)
	})
	if err != nil {
		return p.failed(err)
	}
	p.log.Info("catchup: skipped to the end of the list", "cursor", end)
	return p.cfg.interval
}

// failed logs a failed pass and returns the wait before the next one: the
// delay the failure asked for, else the poll interval.
func (p *Poller) failed(err error) time.Duration {
	if errors.Is(err, ErrLeaseLost) {
		p.held.Store(false)
		p.log.Info("catchup: lease lost during a pass", "err", err)
		return p.cfg.lease / 3
	}
	if errors.Is(err, context.Canceled) {
		return p.cfg.interval
	}
	p.log.Warn("catchup: pass failed; the cursor stays", "err", err)
	if d, ok := retry.RetryAfter(err); ok && d > 0 {
		return d
	}
	return p.cfg.interval
}

// identify sets each event's id from its payload with the WithEventID
// function; by default it keeps the id the source gave, else reads the
// payload's "id". An event whose id cannot be read is left without one:
// check refuses it.
func (p *Poller) identify(evs []Event) {
	for i := range evs {
		if p.cfg.eventID == nil && evs[i].ID != "" {
			continue
		}
		id, err := p.eventID(evs[i].Payload)
		if err != nil {
			id = ""
		}
		evs[i].ID = id
	}
}

// check refuses an event for good (DeadLetter.Refused): no id, or one, a
// type or a size out of bounds. The error matches idempotency.ErrInvalid or
// idempotency.ErrTooLarge.
func (p *Poller) check(ev *Event) error {
	if ev.ID == "" {
		_, err := p.eventID(ev.Payload)
		if err == nil {
			err = errors.New("empty id")
		}
		return fmt.Errorf("%w: reading the event's id: %v", idempotency.ErrInvalid, err)
	}
	return checkEvent(ev)
}

// created returns ev's creation time, or zero when unknown or more than
// maxAhead ahead of this process's clock (a provider's error, which would
// otherwise shut the overlap window by time).
func created(ev Event) time.Time {
	if ev.Created.After(time.Now().Add(maxAhead)) {
		return time.Time{}
	}
	return ev.Created
}

// record records in tr that ev was read; a cursor the store cannot keep is
// left out (the stored cursor stays at the one before).
func record(tr *trail, ev Event) {
	if !storableCursor(ev.Cursor) {
		ev.Cursor = ""
	}
	ev.Created = created(ev)
	tr.add(ev)
}

func (p *Poller) retryTx(ctx context.Context, fn func(ctx context.Context, tx steadfast.Tx) error) error {
	return sqldb.Retry(ctx, sqldb.RetryPolicy{}, func(ctx context.Context) error {
		tx, err := p.store.Begin(ctx)
		if err != nil {
			return fmt.Errorf("catchup: begin: %w", err)
		}
		if err := fn(ctx, tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("catchup: commit: %w", err)
		}
		return nil
	})
}

// loadFailing reads which events of the source have failed attempts
// recorded (by this process or another), so that a pass that applies one
// (or finds it applied by its webhook) deletes the record.
func (p *Poller) loadFailing(ctx context.Context) error {
	ids, err := p.store.Failing(ctx, p.name, maxFailing)
	if err != nil {
		return fmt.Errorf("catchup: reading the events failing: %w", err)
	}
	clear(p.failing)
	for _, id := range ids {
		p.failing[id] = true
	}
	return nil
}

// apply applies a page in one transaction. When an event stops it (its
// handler fails, or it is refused for good), nothing of the page is
// committed: the events before it are applied again (the same way), then
// the event is settled: a refused event becomes a dead letter at once; a
// failure counts an attempt, and the pass stops there, unless the event
// reached the maximum of attempts: it then becomes a dead letter. The
// events after a dead letter are applied.
func (p *Poller) apply(ctx context.Context, tr *trail, evs []Event) error {
	for len(evs) > 0 {
		k, stop, err := p.applyAll(ctx, tr, evs)
		if err != nil || k < 0 {
			return err
		}
		if err := p.apply(ctx, tr, evs[:k]); err != nil {
			return err
		}
		if rf, ok := stop.(*refusal); ok {
			err = p.refuse(ctx, tr, evs[k], rf.err)
		} else {
			err = p.attemptFailed(ctx, tr, evs[k], stop.(*handlerError).err)
		}
		if err != nil {
			return err
		}
		evs = evs[k+1:]
	}
	return nil
}

// applyAll applies evs in one transaction that also advances the cursor. It
// returns k = -1 once committed, or the index of the event that stopped it,
// with a *handlerError or a *refusal, having committed nothing.
func (p *Poller) applyAll(ctx context.Context, tr *trail, evs []Event) (k int, stop error, err error) {
	var (
		next                trail
		applied, duplicates int
		resolved            []string
	)
	err = p.retryTx(ctx, func(ctx context.Context, tx steadfast.Tx) error {
		next = tr.clone()
		applied, duplicates, resolved = 0, 0, resolved[:0]
		for i := range evs {
			ev := evs[i]
			if err := p.check(&ev); err != nil {
				k = i
				return &refusal{err}
			}
			first, err := p.inbox.MarkProcessed(ctx, tx, p.cfg.consumer, ev.ID)
			if err != nil {
				if refusedByInbox(err) {
					k = i
					return &refusal{err}
				}
				return fmt.Errorf("catchup: marking event %s processed: %w", ev.ID, err)
			}
			if first {
				if err := p.fn(ctx, tx, ev); err != nil {
					k = i
					return &handlerError{err}
				}
				applied++
			} else {
				duplicates++
			}
			if p.failing[ev.ID] {
				if _, err := p.store.Resolve(ctx, tx, p.name, ev.ID); err != nil {
					return err
				}
				resolved = append(resolved, ev.ID)
			}
			record(&next, ev)
		}
		return p.store.Advance(ctx, tx, p.name, p.owner, next.cursor(), next.newest, p.cfg.lease)
	})
	var (
		he *handlerError
		rf *refusal
	)
	switch {
	case errors.As(err, &he):
		return k, he, nil
	case errors.As(err, &rf):
		return k, rf, nil
	case err != nil:
		return 0, nil, err
	}
	*tr = next
	p.m.counted(ctx, applied, duplicates)
	for _, id := range resolved {
		delete(p.failing, id)
	}
	return -1, nil, nil
}

// refuse makes ev, refused for good, a dead letter at once (what of it the
// store can keep) and advances the cursor past it. A pass that reads it
// again (in the overlap window) changes nothing.
func (p *Poller) refuse(ctx context.Context, tr *trail, ev Event, cause error) error {
	why, kept := reason(cause), storable(ev)
	var (
		next   trail
		buried bool
	)
	err := p.retryTx(ctx, func(ctx context.Context, tx steadfast.Tx) error {
		next = tr.clone()
		var err error
		if buried, err = p.store.Bury(ctx, tx, p.name, kept, why, true); err != nil {
			return err
		}
		record(&next, ev)
		return p.store.Advance(ctx, tx, p.name, p.owner, next.cursor(), next.newest, p.cfg.lease)
	})
	if err != nil {
		return err
	}
	*tr = next
	if buried {
		p.m.dead.Add(ctx, 1, p.m.source)
		p.log.Error("catchup: event refused for good, made a dead letter", "event", kept.ID, "type", kept.Type, "err", why)
	}
	return nil
}

// attemptFailed records a failed attempt at ev; at the maximum it makes ev a
// dead letter and advances the cursor past it. Otherwise it returns an
// error that ends the pass.
func (p *Poller) attemptFailed(ctx context.Context, tr *trail, ev Event, cause error) error {
	why, kept := reason(cause), storable(ev)
	attempts, err := p.store.Fail(ctx, p.name, kept, why)
	if err != nil {
		return fmt.Errorf("catchup: recording the failure of event %s: %w (the handler failed: %v)", ev.ID, err, cause)
	}
	p.failing[ev.ID] = true
	if attempts < p.cfg.maxAttempts {
		return fmt.Errorf("catchup: event %s: attempt %d of %d failed: %w", ev.ID, attempts, p.cfg.maxAttempts, cause)
	}
	var (
		next  trail
		first bool
	)
	err = p.retryTx(ctx, func(ctx context.Context, tx steadfast.Tx) error {
		next = tr.clone()
		var err error
		if first, err = p.inbox.MarkProcessed(ctx, tx, p.cfg.consumer, ev.ID); err != nil {
			return fmt.Errorf("catchup: marking event %s processed: %w", ev.ID, err)
		}
		if first {
			_, err = p.store.Bury(ctx, tx, p.name, kept, why, false)
		} else { // its webhook applied it meanwhile
			_, err = p.store.Resolve(ctx, tx, p.name, ev.ID)
		}
		if err != nil {
			return err
		}
		record(&next, ev)
		return p.store.Advance(ctx, tx, p.name, p.owner, next.cursor(), next.newest, p.cfg.lease)
	})
	if err != nil {
		return err
	}
	*tr = next
	delete(p.failing, ev.ID)
	if first {
		p.m.dead.Add(ctx, 1, p.m.source)
		p.log.Error("catchup: event made a dead letter after the maximum of attempts",
			"event", ev.ID, "type", ev.Type, "attempts", attempts, "err", cause)
	}
	return nil
}

// requeued applies the dead letters an operator requeued.
func (p *Poller) requeued(ctx context.Context) error {
	for {
		evs, err := p.store.Requeued(ctx, p.name, 100)
		if err != nil {
			return fmt.Errorf("catchup: reading requeued dead letters: %w", err)
		}
		progress := false
		for _, ev := range evs {
			var ok bool
			err := p.retryTx(ctx, func(ctx context.Context, tx steadfast.Tx) error {
				var err error
				if ok, err = p.store.Resolve(ctx, tx, p.name, ev.ID); err != nil || !ok {
					return err
				}
				if err := p.fn(ctx, tx, ev); err != nil {
					return &handlerError{err}
				}
				return nil
			})
			var he *handlerError
			if errors.As(err, &he) {
				why := reason(he.err)
				attempts, err := p.store.Fail(ctx, p.name, ev, why)
				if err != nil {
					return fmt.Errorf("catchup: recording the failure of event %s: %w", ev.ID, err)
				}
				if attempts >= p.cfg.maxAttempts {
					if err := p.retryTx(ctx, func(ctx context.Context, tx steadfast.Tx) error {
						_, err := p.store.Bury(ctx, tx, p.name, ev, why, false)
						return err
					}); err != nil {
						return err
					}
					p.m.dead.Add(ctx, 1, p.m.source)
					p.log.Error("catchup: requeued dead letter failed again", "event", ev.ID, "attempts", attempts, "err", he.err)
					progress = true
				}
				continue
			}
			if err != nil {
				return err
			}
			if ok {
				p.m.counted(ctx, 1, 0)
			}
			progress = true
		}
		if len(evs) < 100 || !progress {
			return nil
		}
	}
}

// isNil reports whether v is nil or a typed nil (a nil pointer, map, func,
// slice or channel in an interface).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Slice, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
