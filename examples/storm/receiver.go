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

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/webhook"
)

// receiver is our webhook endpoint: verification, then the idempotency
// middleware (in transactional mode on a SQL store), then the handler with
// the inbox and the ordering guard. With -postgres it crashes once halfway:
// its connections drop, its database sessions are killed mid-transaction,
// and a new instance takes over.
type receiver struct {
	s       *storm
	srv     *httptest.Server
	current atomic.Pointer[http.Handler]
	crashed atomic.Bool

	mu  sync.Mutex
	dbs []*sql.DB
}

func newReceiver(s *storm) (*receiver, error) {
	r := &receiver{s: s}
	h, err := r.instance(1)
	if err != nil {
		return nil, err
	}
	r.current.Store(&h)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		(*r.current.Load()).ServeHTTP(w, req)
	}))
	return r, nil
}

func (r *receiver) url() string { return r.srv.URL + "/webhooks/payments" }

func (r *receiver) close() {
	r.srv.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, db := range r.dbs {
		db.Close()
	}
}

// instance builds one receiver process: its own connection pool on
// PostgreSQL (so that a crash can kill its sessions), its own middleware.
func (r *receiver) instance(gen int) (http.Handler, error) {
	s := r.s
	db, idem, store := s.db, s.idem, s.idemStore
	if s.postgres {
		u, err := url.Parse(s.pgURL)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("application_name", fmt.Sprintf("storm-receiver-%d", gen))
		u.RawQuery = q.Encode()
		if db, err = sql.Open("pgx", u.String()); err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(12)
		r.mu.Lock()
		r.dbs = append(r.dbs, db)
		r.mu.Unlock()
		if idem, err = sqlstore.New(db, sqlstore.Postgres); err != nil {
			return nil, err
		}
		if s.cfg.redis == "" {
			store = idem
		}
	}
	verifier, err := webhook.NewVerifier([]string{providerSecret})
	if err != nil {
		return nil, err
	}
	verify, err := webhook.NewMiddleware(verifier, webhook.WithLogger(s.log))
	if err != nil {
		return nil, err
	}
	var h http.Handler = r.handler(db, idem)
	if !s.cfg.noDedupe {
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
			// commit together, once.
			opts = append(opts, idempotency.WithTransaction())
		}
		mw, err := idempotency.Middleware(store, opts...)
		if err != nil {
			return nil, err
		}
		h = mw(h)
	}
	return chaos(verify(h)), nil
}

// handler applies one payment event to its order.
func (r *receiver) handler(db *sql.DB, idem *sqlstore.Store) http.Handler {
	s := r.s
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var ev event
		if err := json.NewDecoder(req.Body).Decode(&ev); err != nil || ev.ID == "" || ev.OrderID == "" {
			http.Error(w, "malformed event", http.StatusBadRequest)
			return
		}
		ctx := req.Context()
		var applied bool
		work := func(tx *sql.Tx) error {
			applied = false
			if !s.cfg.noDedupe {
				first, err := idem.MarkProcessed(ctx, tx, "orders", ev.ID)
				if err != nil {
					return err
				}
				if !first {
					s.c.inboxDuplicates.Add(1)
					return nil
				}
			}
			ok := true
			if !s.cfg.noOrderGuard {
				var err error
				if ok, err = idem.ApplyVersion(ctx, tx, "order:"+ev.OrderID, ev.Version); err != nil {
					return err
				}
			}
			if !ok {
				_, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_effects (event_id, kind) VALUES (?, 'stale')`), ev.ID)
				if err == nil {
					s.c.stale.Add(1) // live count; the report reads the database
				}
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_orders (id, status, version, origin) VALUES (?, ?, ?, 'webhook')
				ON CONFLICT (id) DO UPDATE SET status = excluded.status, version = excluded.version`), ev.OrderID, ev.Type, ev.Version); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO storm_effects (event_id, kind) VALUES (?, 'applied')`), ev.ID); err != nil {
				return err
			}
			applied = true
			s.c.applied.Add(1) // live count; the report reads the database
			return s.announce(ctx, tx, ev)
		}
		var err error
		if tx := sqlstore.TxFrom(ctx); tx != nil {
			err = work(tx) // the middleware commits
		} else {
			err = inTxOn(ctx, db, work)
			if err == nil && applied {
				s.afterCommit(ev)
			}
		}
		if err != nil {
			http.Error(w, "could not apply the event", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"received":%q}`, ev.ID)
	})
}

// crash kills the current instance the way a dead process would: its
// connections drop and its database sessions end mid-transaction. A new
// instance takes over. Only with PostgreSQL, whose sessions can be killed.
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
	time.Sleep(200 * time.Millisecond)
	h, err := r.instance(2)
	if err != nil {
		return err
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
