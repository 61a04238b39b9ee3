// Command storm is the tour of steadfast: a storm of ordinary integration
// failures, played inside one process and survived on screen.
//
//	go run ./examples/storm                 # embedded SQLite in a temporary directory
//	go run ./examples/storm -postgres URL   # the same storm on PostgreSQL
//	go run ./examples/storm -redis URL      # idempotency records in Redis
//
// It plays four parties:
//
//   - a payment provider that takes charges behind its own idempotency
//     middleware and sends signed webhooks to our receiver: duplicates (some
//     concurrent), reordering, responses lost on the way, 5xx answers that
//     make it redeliver;
//   - our receiver: webhook verification, then the idempotency middleware in
//     transactional mode, then the inbox and the ordering guard, updating
//     orders in the database and writing an outbox message in the same
//     transaction; a catch-up poller (package catchup) applies, with the
//     same handler and inbox, the events it finds in the provider's list;
//   - our order service, which writes each order and an outbox message in one
//     transaction and charges it through an outbound client (retry, then a
//     circuit breaker with a fallback, with an idempotency key);
//   - a flaky partner that receives signed deliveries from the outbox relay:
//     timeouts, 503 with Retry-After, and an outage long enough to open the
//     relay's breaker. Halfway, the relay crashes (stopped without cleanup)
//     and a new one takes over.
//
// The provider also drops about 5% of its events for good (never sent, not
// even retried), as real providers do when they give up or disable an
// endpoint; its events list (paged, eventually consistent, answering 429
// now and then) still has them, and the receiver's catch-up poller finds
// them there and applies them through the same handler and inbox as the
// webhooks.
//
// While it runs, the operator's page (package ops) serves on -ops (a
// loopback port of its own by default; its address is printed): the
// outbox's backlog and dead letters, the relay's deliveries, the breakers,
// the idempotency records. -ops-hold keeps it serving after the report,
// until Ctrl-C.
//
// It ends with a report and the checks that matter, each PASS or FAIL, and
// exits non-zero on any FAIL. A seed fixes the workload: the same events,
// duplicates, reorderings, drops and faults. Four flags remove a guarantee
// on purpose, to show that the checks can fail: -no-dedupe,
// -no-order-guard, -no-outbox and -no-catchup.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"
)

// config is one storm.
type config struct {
	orders   int
	seed     uint64
	postgres string
	redis    string
	dir      string // database directory for SQLite; a temporary one when empty
	verbose  bool
	quiet    bool // no progress line

	noDedupe     bool // receiver without idempotency middleware and inbox
	noOrderGuard bool // receiver without the ordering guard
	noOutbox     bool // call the partner after commit instead of the outbox
	noCatchup    bool // receiver without the catch-up poller

	ops     string // address of the operator's page; "" for none
	opsHold bool   // keep serving the page after the report
}

func main() {
	var cfg config
	short := flag.Bool("short", false, "a small storm (40 orders), as CI runs it")
	flag.IntVar(&cfg.orders, "orders", 150, "orders to create; each gets 4 payment events")
	flag.Uint64Var(&cfg.seed, "seed", 1, "seed of the workload: events, duplicates, reorderings and faults")
	flag.StringVar(&cfg.postgres, "postgres", "", "PostgreSQL URL (pgx) to run on instead of embedded SQLite")
	flag.StringVar(&cfg.redis, "redis", "", "Redis URL for the idempotency records of the receiver")
	flag.BoolVar(&cfg.verbose, "v", false, "log warnings of the library to stderr")
	flag.BoolVar(&cfg.noDedupe, "no-dedupe", false, "turn receiver-side deduplication off (the checks must FAIL)")
	flag.BoolVar(&cfg.noOrderGuard, "no-order-guard", false, "turn the ordering guard off (the checks must FAIL)")
	flag.BoolVar(&cfg.noOutbox, "no-outbox", false, "call the partner after commit instead of using the outbox (the checks must FAIL)")
	flag.BoolVar(&cfg.noCatchup, "no-catchup", false, "turn the catch-up poller off: dropped webhooks stay lost (the checks must FAIL)")
	flag.StringVar(&cfg.ops, "ops", "127.0.0.1:0", `address of the operator's page while the storm runs ("" for none)`)
	flag.BoolVar(&cfg.opsHold, "ops-hold", false, "keep serving the operator's page after the report, until Ctrl-C")
	flag.Parse()
	if *short {
		cfg.orders = 40
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ok, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func logger(cfg config) *slog.Logger {
	if cfg.verbose {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// run plays one storm and prints its report to w. It reports whether every
// check passed; err is for a storm that could not be played at all.
func run(ctx context.Context, cfg config, w io.Writer) (bool, error) {
	if cfg.orders < 1 {
		return false, fmt.Errorf("-orders must be at least 1")
	}
	start := time.Now()
	s, err := newStorm(ctx, cfg, w)
	if err != nil {
		return false, err
	}
	defer s.close()
	if s.page != nil {
		fmt.Fprintf(w, "operator's page: %s (watch the storm; actions on)\n", s.pageURL)
	}
	checks, err := s.play(ctx)
	if err != nil {
		return false, err
	}
	ok := printReport(w, &s.c, checks, time.Since(start))
	if s.page != nil && cfg.opsHold {
		fmt.Fprintf(w, "\noperator's page still serving at %s; Ctrl-C ends the storm\n", s.pageURL)
		<-ctx.Done()
	}
	return ok, nil
}
