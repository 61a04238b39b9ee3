package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/ops"
)

// serveOps mounts the operator's page on a listener of its own, at
// cfg.ops, so that a person can watch the storm: the outbox's backlog and
// dead letters, the relay's deliveries and failures, the breakers, and the
// idempotency records. Its actions are on, done as "storm".
//
// A service mounts it behind its own authentication:
//
//	mux.Handle("/ops/", requireAdmin(http.StripPrefix("/ops", page)))
func (s *storm) serveOps() error {
	// The receiver's idempotency records: in the SQL store, or in Redis.
	idem, ok := s.idemStore.(ops.IdempotencyStore)
	if !ok {
		return fmt.Errorf("-ops: the idempotency store %T cannot be shown", s.idemStore)
	}
	page, err := ops.New(
		ops.WithOutbox(s.out),
		ops.WithIdempotency(idem),
		ops.WithActions(func(*http.Request) string { return "storm" }),
		ops.WithLogger(s.log),
	)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.ops)
	if err != nil {
		return fmt.Errorf("-ops: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", page))
	mux.Handle("/{$}", http.RedirectHandler("/ops/", http.StatusFound))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("operator's page", "err", err)
		}
	}()
	s.closers = append(s.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	s.page = page
	s.pageURL = "http://" + ln.Addr().String() + "/ops/"
	return nil
}

// breakerHooks are the state hooks every breaker of the storm gets: count
// the openings for the report, and show the breaker on the operator's page.
func (s *storm) breakerHooks() []breaker.Option {
	opts := []breaker.Option{breaker.WithStateHook(func(t breaker.Transition) {
		if t.To == breaker.Open {
			s.c.breakerOpenings.Add(1)
		}
	})}
	if s.page != nil {
		opts = append(opts, breaker.WithStateHook(s.page.ObserveBreaker))
	}
	return opts
}
