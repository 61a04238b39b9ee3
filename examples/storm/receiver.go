package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/retry"
	"github.com/steadfast-go/steadfast/webhook"
)

// source is the name of the provider's events list for the catch-up
// poller: the key of its cursor and lease, and the inbox's consumer name
// under which both paths mark the events they applied.
const source = "provider"

// receiver is our webhook endpoint: verification, then the idempotency
// middleware (in transactional mode on a SQL store), then the catch-up
// poller's webhook handler, which marks the event in the inbox and applies
// it with the same function the poller applies the events it finds in the
// provider's list with (webhooks that never came). With -postgres it
// crashes once halfway: its connections drop, its database sessions are
// killed mid-transaction, its poller dies without giving up its lease, and
// a new instance takes over.
type receiver struct {
	s       *storm
	srv     *httptest.Server
	current atomic.Pointer[http.Handler]
	crashed atomic.Bool

	mu      sync.Mutex
	dbs     []*sql.DB
	poller  *catchup.Poller // the live instance's
	polling bool
}

func newReceiver(s *storm) (*receiver, error) {
	r := &receiver{s: s}
	h, p, err := r.instance(1)
	if err != nil {
		return nil, err
	}
	r.current.Store(&h)
	r.poller = p
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		(*r.current.Load()).ServeHTTP(w, req)
	}))
	return r, nil
}

func (r *receiver) url() string { return r.srv.URL + "/webhooks/payments" }

func (r *receiver) close() {
	r.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = r.stopPolling(ctx)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, db := range r.dbs {
		db.Close()
	}
}

// viaPoller marks the context of the poller's work, so that the effects
// say which path applied them.
type viaPoller struct{}

// startPolling starts the live instance's poller (not with -no-catchup).
func (r *receiver) startPolling(ctx context.Context) error {
	if r.s.cfg.noCatchup {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.polling = true
	return r.poller.Start(context.WithValue(ctx, viaPoller{}, true))
}

// stopPolling stops the live instance's poller: it gives up its lease.
func (r *receiver) stopPolling(ctx context.Context) error {
	r.mu.Lock()
	p := r.poller
	r.polling = false
	r.mu.Unlock()
	return p.Stop(ctx)
}

// instance builds one receiver process: its own connection pool on
// PostgreSQL (so that a crash can kill its sessions), its own middleware and
// its own poller (not started).
func (r *receiver) instance(gen int) (http.Handler, *catchup.Poller, error) {
	s := r.s
	db, idem, store := s.db, s.idem, s.idemStore
	if s.postgres {
		u, err := url.Parse(s.pgURL)
		if err != nil {
			return nil, nil, err
		}
		q := u.Query()
		q.Set("application_name", fmt.Sprintf("storm-receiver-%d", gen))
		u.RawQuery = q.Encode()
		if db, err = sql.Open("pgx", u.String()); err != nil {
			return nil, nil, err
		}
		db.SetMaxOpenConns(12)
		r.mu.Lock()
		r.dbs = append(r.dbs, db)
		r.mu.Unlock()
		if idem, err = sqlstore.New(db, steadfast.Postgres); err != nil {
			return nil, nil, err
		}
		if s.cfg.redis == "" {
			store = idem
		}
	}
	poller, err := r.newPoller(db, idem)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := webhook.NewVerifier([]string{providerSecret})
	if err != nil {
		return nil, nil, err
	}
	verify, err := webhook.NewMiddleware(verifier, webhook.WithLogger(s.log))
	if err != nil {
		return nil, nil, err
	}
	if s.cfg.noDedupe {
		// No idempotency middleware, no inbox: every delivery is applied.
		return chaos(verify(r.applyEveryDelivery(db, idem))), poller, nil
	}
	opts := []idempotency.Option{
		idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")),
		idempotency.WithWait(5 * time.Second),
		// Short on purpose: late redeliveries outlive the record, and
		// the inbox is what still catches them.
		idempotency.WithRetention(600 * time.Millisecond),
		idempotency.WithLease(500 * time.Millisecond),
		idempotency.WithLogger(s.log),
	}
	if _, tx := store.(idempotency.TxStore); tx && !s.cfg.noOutbox {
		// The record, the inbox row, the order and the outbox message
		// commit together, once. (Without it, as with Redis, the webhook
		// handler commits a transaction of its own.)
		opts = append(opts, idempotency.WithTransaction())
	}
	mw, err := idempotency.Middleware(store, opts...)
	if err != nil {
		return nil, nil, err
	}
	return chaos(verify(mw(r.countDuplicates(poller.WebhookHandler())))), poller, nil
}

// newPoller builds the catch-up poller of one instance: it reads the
// provider's events list from a cursor kept in the database, and applies
// each event it finds not yet in the inbox with apply, in one transaction
// with the inbox row and the cursor.
func (r *receiver) newPoller(db *sql.DB, idem *sqlstore.Store) (*catchup.Poller, error) {
	s := r.s
	cstore, err := sqlcatchup.New(db, s.dialect)
	if err != nil {
		return nil, err
	}
	src, err := catchup.NewHTTPSource(&http.Client{Timeout: 5 * time.Second}, s.provider.eventsURL())
	if err != nil {
		return nil, err
	}
	// A 503 is tried again at once; a Retry-After longer than half a
	// second ends the pass (the cursor stays), and the next pass begins
	// after it.
	policy, err := retry.New(
		retry.WithMaxAttempts(4),
		retry.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		retry.WithMaxRetryAfter(500*time.Millisecond),
		retry.WithLogger(s.log),
	)
	if err != nil {
		return nil, err
	}
	return catchup.NewPoller(source, src, cstore, idem, r.apply(idem),
		catchup.WithPollInterval(100*time.Millisecond),
		// The list shows an event at most maxLateness places late: the
		// cursor stays further behind, so that each pass reads it again.
		catchup.WithOverlapEvents(3*maxLateness),
		catchup.WithLease(2*time.Second),
		catchup.WithRetry(policy),
		catchup.WithMaxAttempts(20),
		catchup.WithMeterProvider(s.meters),
		catchup.WithLogger(s.log),
	)
}

// apply applies one payment event to its order, in tx: the function both
// paths share. The inbox row is catchup's (consumer "provider"); the
// ordering guard, the order, the effect and the outbox message are ours.
func (r *receiver) apply(idem *sqlstore.Store) catchup.HandlerFunc {
	s := r.s
	return func(ctx context.Context, tx steadfast.Tx, cev catchup.Event) error {
		var ev event
		if err := json.Unmarshal(cev.Payload, &ev); err != nil || ev.OrderID == "" {
			return fmt.Errorf("malformed event %s", cev.ID)
		}
		ev.ID = cev.ID
		via := "webhook"
		if ctx.Value(viaPoller{}) != nil {
			via = "poller"
		}
		ok := true
		if !s.cfg.noOrderGuard {
			var err error
			if ok, err = idem.ApplyVersion(ctx, tx, "order:"+ev.OrderID, ev.Version); err != nil {
				return err
			}
		}
		if !ok {
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_effects (event_id, kind, via) VALUES (?, 'stale', ?)`), ev.ID, via)
			if err == nil {
				s.c.stale.Add(1) // live count; the report reads the database
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_orders (id, status, version, origin) VALUES (?, ?, ?, 'webhook')
			ON CONFLICT (id) DO UPDATE SET status = excluded.status, version = excluded.version`), ev.OrderID, ev.Type, ev.Version); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_effects (event_id, kind, via) VALUES (?, 'applied', ?)`), ev.ID, via); err != nil {
			return err
		}
		s.c.applied.Add(1) // live count; the report reads the database
		if s.cfg.noOutbox {
			s.afterCommit(ev)
			return nil
		}
		return s.announce(ctx, tx, ev)
	}
}

// applyEveryDelivery is the receiver of -no-dedupe: each delivery runs the
// event's work in a transaction of its own, with no inbox.
func (r *receiver) applyEveryDelivery(db *sql.DB, idem *sqlstore.Store) http.Handler {
	apply := r.apply(idem)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var ev event
		if err := json.NewDecoder(req.Body).Decode(&ev); err != nil || ev.ID == "" {
			http.Error(w, "malformed event", http.StatusBadRequest)
			return
		}
		payload := mustJSON(ev)
		err := inTxOn(req.Context(), db, func(tx *sql.Tx) error {
			return apply(req.Context(), tx, catchup.Event{ID: ev.ID, Type: ev.Type, Payload: payload})
		})
		if err != nil {
			http.Error(w, "could not apply the event", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"applied":true}`, ev.ID)
	})
}

// countDuplicates counts the deliveries that the inbox absorbed: the
// webhook handler answers them 200 {"id":…,"applied":false}.
func (r *receiver) countDuplicates(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		sw := &sniffer{ResponseWriter: w}
		next.ServeHTTP(sw, req)
		var answer struct {
			Applied *bool `json:"applied"`
		}
		if sw.status == http.StatusOK && json.Unmarshal(sw.head, &answer) == nil && answer.Applied != nil && !*answer.Applied {
			r.s.c.inboxDuplicates.Add(1)
		}
	})
}

// sniffer keeps the status and the first bytes of a response.
type sniffer struct {
	http.ResponseWriter
	status int
	head   []byte
}

func (s *sniffer) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *sniffer) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if n := min(len(b), 256-len(s.head)); n > 0 {
		s.head = append(s.head, b[:n]...)
	}
	return s.ResponseWriter.Write(b)
}

// crash kills the current instance the way a dead process would: its
// connections drop, its database sessions end mid-transaction and its
// poller dies holding its lease. A new instance takes over: its poller
// polls once that lease has run out. Only with PostgreSQL, whose sessions
// can be killed.
func (r *receiver) crash(ctx context.Context) error {
	if !r.s.postgres || !r.crashed.CompareAndSwap(false, true) {
		return nil
	}
	var dead http.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "down", http.StatusBadGateway)
	})
	r.current.Store(&dead)
	r.srv.CloseClientConnections()
	if _, err := r.s.db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'storm-receiver-1'`); err != nil {
		return fmt.Errorf("receiver crash: %w", err)
	}
	// The dead process's pool is gone, so its poller cannot give its lease
	// up on the way out.
	r.mu.Lock()
	oldDB, oldPoller, polling := r.dbs[0], r.poller, r.polling
	r.mu.Unlock()
	oldDB.Close()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_ = oldPoller.Stop(gone)
	time.Sleep(200 * time.Millisecond)
	h, p, err := r.instance(2)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.poller = p
	r.mu.Unlock()
	if polling {
		if err := r.startPolling(ctx); err != nil {
			return err
		}
	}
	r.current.Store(&h)
	r.s.c.receiverCrashes.Add(1)
	return nil
}

// chaos plays the faults the provider asked for in the Storm-Fault header
// (the provider decides them from the seed): a receiver that fails before
// doing anything, or one whose answer is lost on the way back.
func chaos(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Header.Get("Storm-Fault") {
		case "fail-before":
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		case "lose-response":
			next.ServeHTTP(httptest.NewRecorder(), req)
			http.Error(w, "response lost", http.StatusBadGateway)
		default:
			next.ServeHTTP(w, req)
		}
	})
}
