package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/ops"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// Secrets of the two signed hops: provider → receiver and relay → partner.
const (
	providerSecret = "whsec_c3Rvcm0tcHJvdmlkZXItc2VjcmV0LTMyLWJ5dGVzISE="
	partnerSecret  = "whsec_c3Rvcm0tcGFydG5lci1zZWNyZXQtMzItYnl0ZXMhISE="
	partnerTopic   = "partner"
)

// storm holds the parties of one run and the database they share.
type storm struct {
	cfg  config
	w    io.Writer
	log  *slog.Logger
	c    counters
	plan *plan

	db       *sql.DB
	dialect  steadfast.Dialect // one value for sqlstore, sqloutbox and sqlcatchup
	postgres bool
	pgURL    string // with the run's schema on the search path
	closers  []func()

	// meters reads the library's metrics (the catch-up poller's) for the
	// report, as an application's OpenTelemetry SDK would export them.
	meters  *sdkmetric.MeterProvider
	metrics *sdkmetric.ManualReader

	page    *ops.Page // the operator's page, with -ops
	pageURL string

	idem      *sqlstore.Store   // idempotency records, inbox and ordering guard
	idemStore idempotency.Store // the receiver's record store: idem, or Redis
	out       *sqloutbox.Store

	provider *provider
	partner  *partner
	receiver *receiver

	commitWaits sync.Map // -no-outbox: events whose commit a call waits for
}

func newStorm(ctx context.Context, cfg config, w io.Writer) (_ *storm, err error) {
	s := &storm{cfg: cfg, w: w, log: logger(cfg), plan: makePlan(cfg.seed, cfg.orders)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := s.openDB(ctx); err != nil {
		return nil, err
	}
	s.dialect = steadfast.SQLite
	if s.postgres {
		s.dialect = steadfast.Postgres
	}
	dialect := s.dialect
	s.metrics = sdkmetric.NewManualReader()
	s.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.metrics))
	s.closers = append(s.closers, func() { _ = s.meters.Shutdown(context.Background()) })
	if s.idem, err = sqlstore.New(s.db, dialect); err != nil {
		return nil, err
	}
	if err := s.idem.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("idempotency schema: %w", err)
	}
	s.idemStore = s.idem
	if cfg.redis != "" {
		opts, err := redis.ParseURL(cfg.redis)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		rdb := redis.NewClient(opts)
		s.closers = append(s.closers, func() { rdb.Close() })
		if err := rdb.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		rs, err := redisstore.New(rdb, redisstore.WithPrefix(fmt.Sprintf("storm:%d:", time.Now().UnixNano())))
		if err != nil {
			return nil, err
		}
		s.idemStore = rs
	}
	if s.out, err = sqloutbox.New(s.db, dialect); err != nil {
		return nil, err
	}
	if err := s.out.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("outbox schema: %w", err)
	}
	// The catch-up poller's cursor, lease and dead letters, in the same
	// database as the inbox and the orders.
	cstore, err := sqlcatchup.New(s.db, dialect)
	if err != nil {
		return nil, err
	}
	if err := cstore.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("catch-up schema: %w", err)
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS storm_orders (id TEXT PRIMARY KEY, status TEXT NOT NULL, version BIGINT NOT NULL, origin TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS storm_effects (event_id TEXT NOT NULL, kind TEXT NOT NULL, via TEXT NOT NULL)`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	if cfg.ops != "" {
		if err := s.serveOps(); err != nil {
			return nil, err
		}
	}
	if s.partner, err = newPartner(s); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.partner.close)
	if s.provider, err = newProvider(s); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.provider.close)
	if s.receiver, err = newReceiver(s); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { s.receiver.close() })
	return s, nil
}

// openDB opens SQLite in a temporary directory, or PostgreSQL in a schema
// of the run's own that is dropped at the end.
func (s *storm) openDB(ctx context.Context) error {
	if s.cfg.postgres == "" {
		dir := s.cfg.dir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "steadfast-storm-")
			if err != nil {
				return err
			}
			s.closers = append(s.closers, func() { os.RemoveAll(tmp) })
			dir = tmp
		}
		db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "storm.db")))
		if err != nil {
			return err
		}
		db.SetMaxOpenConns(8)
		s.db = db
		s.closers = append(s.closers, func() { db.Close() })
		return db.PingContext(ctx)
	}
	s.postgres = true
	schema := fmt.Sprintf("storm_%d", time.Now().UnixNano())
	admin, err := sql.Open("pgx", s.cfg.postgres)
	if err != nil {
		return fmt.Errorf("-postgres: %w", err)
	}
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return fmt.Errorf("-postgres: %w", err)
	}
	s.closers = append(s.closers, func() {
		_, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close()
	})
	u, err := url.Parse(s.cfg.postgres)
	if err != nil {
		return fmt.Errorf("-postgres: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	s.pgURL = u.String()
	db, err := sql.Open("pgx", s.pgURL)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(16)
	s.db = db
	s.closers = append(s.closers, func() { db.Close() })
	return db.PingContext(ctx)
}

func (s *storm) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// q rewrites ? placeholders as $n on PostgreSQL.
func (s *storm) q(query string) string {
	if !s.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// inTx runs fn in a transaction, again on SQLite busy and deadlock errors,
// as an application would.
func (s *storm) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return inTxOn(ctx, s.db, fn)
}

func inTxOn(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		var tx *sql.Tx
		tx, err = db.BeginTx(ctx, nil)
		if err == nil {
			err = fn(tx)
			if err == nil {
				err = tx.Commit()
			} else {
				_ = tx.Rollback()
			}
		}
		if err == nil || ctx.Err() != nil || !transient(err) {
			return err
		}
		time.Sleep(time.Duration(attempt+1) * 5 * time.Millisecond)
	}
	return err
}

func transient(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked") ||
		strings.Contains(msg, "deadlock") || strings.Contains(msg, "40001") || strings.Contains(msg, "40P01")
}

// play runs the storm to its end and returns the checks.
func (s *storm) play(ctx context.Context) ([]check, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	s.c.eventsPlanned.Store(int64(len(s.plan.events)))
	fmt.Fprintf(s.w, "storm: %d orders, %d payment events, seed %d, on %s%s\n", len(s.plan.orders), len(s.plan.events), s.cfg.seed, s.backend(), s.modes())

	stopProgress, progressDone := make(chan struct{}), make(chan struct{})
	if s.cfg.quiet {
		close(progressDone)
	} else {
		go progress(s.w, &s.c, stopProgress, progressDone)
	}
	defer func() {
		select {
		case <-stopProgress:
		default:
			close(stopProgress)
		}
		<-progressDone
	}()

	relays, err := startRelays(ctx, s)
	if err != nil {
		return nil, err
	}
	defer relays.stop()
	if err := s.receiver.startPolling(ctx); err != nil {
		return nil, err
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs <- s.runOrderService(ctx) }()
	go func() { defer wg.Done(); errs <- s.provider.sendWebhooks(ctx) }()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return nil, err
		}
	}
	s.waitCaughtUp(ctx)
	if err := s.receiver.stopPolling(ctx); err != nil {
		return nil, err
	}
	relays.waitDrained(ctx, s)
	relays.stop()
	close(stopProgress)
	<-progressDone
	return s.checks(ctx)
}

func (s *storm) backend() string {
	b := "embedded SQLite"
	if s.postgres {
		b = "PostgreSQL"
	}
	if s.cfg.redis != "" {
		b += " + Redis"
	}
	return b
}

func (s *storm) modes() string {
	var m []string
	if s.cfg.noDedupe {
		m = append(m, "deduplication OFF")
	}
	if s.cfg.noOrderGuard {
		m = append(m, "ordering guard OFF")
	}
	if s.cfg.noOutbox {
		m = append(m, "outbox OFF")
	}
	if s.cfg.noCatchup {
		m = append(m, "catch-up OFF")
	}
	if len(m) == 0 {
		return ""
	}
	return " (" + strings.Join(m, ", ") + ")"
}

// runOrderService creates every order with its outbox message in one
// transaction, then charges it through the outbound client; charges that
// fell back while the provider was down are charged again later with the
// same idempotency key.
func (s *storm) runOrderService(ctx context.Context) error {
	client, err := s.provider.chargeClient()
	if err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		deferred []string
		firstErr error
	)
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := s.createOrder(ctx, id); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, fmt.Errorf("create order %s: %w", id, err))
					mu.Unlock()
					continue
				}
				if !client.charge(ctx, id) {
					mu.Lock()
					deferred = append(deferred, id)
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range s.plan.orders {
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	// The fallback parked these charges while the circuit was open.
	for len(deferred) > 0 && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		var still []string
		for _, id := range deferred {
			if !client.charge(ctx, id) {
				still = append(still, id)
			}
		}
		deferred = still
	}
	return ctx.Err()
}

// createOrder writes the order and its "order.created" message in one
// transaction. A webhook may have created the order first: then there is
// nothing to announce.
func (s *storm) createOrder(ctx context.Context, id string) error {
	var created bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_orders (id, status, version, origin) VALUES (?, 'created', 0, 'service') ON CONFLICT (id) DO NOTHING`), id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		created = true
		return s.announce(ctx, tx, event{ID: "created_" + id, Type: "order.created", OrderID: id, Version: 0})
	})
	if err == nil && created {
		s.afterCommitted(event{ID: "created_" + id, Type: "order.created", OrderID: id, Version: 0})
	}
	return err
}

// announce writes the partner's message for ev in tx (the outbox), unless
// the storm runs without the outbox: then afterCommit calls the partner.
func (s *storm) announce(ctx context.Context, tx steadfast.Tx, ev event) error {
	if s.cfg.noOutbox {
		return nil
	}
	err := s.out.Enqueue(ctx, tx, outbox.Message{
		Topic:   partnerTopic,
		Key:     ev.OrderID,
		Headers: map[string]string{"Content-Type": "application/json"},
		Payload: mustJSON(ev),
	})
	if err == nil {
		s.c.outboxEnqueued.Add(1)
	}
	return err
}

// afterCommit is the "call the partner after commit" that the outbox
// replaces; it runs only with -no-outbox. Called inside the transaction that
// applied ev, it calls once that transaction has committed (the event's
// effect is visible).
func (s *storm) afterCommit(ev event) {
	if !s.cfg.noOutbox {
		return
	}
	if _, waiting := s.commitWaits.LoadOrStore(ev.ID, true); waiting {
		return
	}
	s.partner.directCalls.Add(1)
	go func() {
		defer s.partner.directCalls.Done()
		for range 1500 {
			var n int
			err := s.db.QueryRow(s.q(`SELECT count(*) FROM storm_effects WHERE event_id = ?`), ev.ID).Scan(&n)
			if err == nil && n > 0 {
				s.c.outboxEnqueued.Add(1)
				s.partner.direct(ev)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
}

// afterCommitted is afterCommit where the commit is known to be done.
func (s *storm) afterCommitted(ev event) {
	if !s.cfg.noOutbox {
		return
	}
	s.c.outboxEnqueued.Add(1)
	s.partner.direct(ev)
}

// waitCaughtUp waits, after the provider's last webhook, until the poller
// has read the end of the events list with every event shown, and applied
// it, so that the checks see what catch-up found. Without catch-up there is
// nothing to wait for.
func (s *storm) waitCaughtUp(ctx context.Context) {
	if s.cfg.noCatchup {
		return
	}
	var since time.Time
	for ctx.Err() == nil {
		if s.provider.listedAll() {
			if since.IsZero() {
				since = time.Now()
			}
			var n int
			err := s.db.QueryRowContext(ctx, `SELECT count(DISTINCT event_id) FROM storm_effects`).Scan(&n)
			if (err == nil && n >= len(s.plan.events)) || time.Since(since) > 2*time.Second {
				return
			}
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
