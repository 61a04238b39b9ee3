// Command idempotent-payment charges a card at most once per idempotency key,
// however often, however concurrently and from however many processes the
// charge is asked for, with idempotency.Do on the PostgreSQL store of
// idempotency/sqlstore.
//
// It plays the calls a payment service sees in production and prints what
// happened to each:
//
//   - a first call charges the card;
//   - the client's retry of that call (its response was lost) replays the
//     stored charge instead of charging again;
//   - five concurrent calls with one key share one charge;
//   - a second process (a new Runner over the same table) replays it too;
//   - the same key with a different amount is refused (a client bug);
//   - a declined card is a final outcome: stored and replayed, not retried;
//   - a provider outage is not final: the claim is released, so the retry
//     charges.
//
// Run it against the PostgreSQL of the test setup (it creates its table if
// missing and needs nothing else):
//
//	go run ./examples/idempotent-payment -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//
// The flag defaults to $TEST_POSTGRES_URL, else to the address above.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.postgres, "postgres", envOr("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flag.StringVar(&cfg.table, "table", "payments_idempotency", "table of the idempotency records")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "idempotent-payment:", err)
		os.Exit(1)
	}
}

type config struct {
	postgres string
	table    string
}

// summary is what run observed, for its test.
type summary struct {
	Charges  int64 // cards charged by the provider
	Declines int64 // charges the provider declined
	Outages  int64 // calls the provider failed with an outage
}

// chargeRequest is the input of a payment: its fingerprint is stored with the
// key, so that the key cannot be reused for another payment.
type chargeRequest struct {
	Order  string `json:"order"`
	Amount int64  `json:"amount"` // in cents
	Card   string `json:"card"`
}

// charge is the result of a payment, stored as JSON and replayed.
type charge struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

func run(ctx context.Context, cfg config, out io.Writer) (summary, error) {
	db, err := sql.Open("pgx", cfg.postgres)
	if err != nil {
		return summary{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(8)

	store, err := sqlstore.New(db, steadfast.Postgres, sqlstore.WithTable(cfg.table))
	if err != nil {
		return summary{}, err
	}
	if err := store.Migrate(ctx); err != nil {
		return summary{}, err
	}

	// One Runner per store and process: it collapses concurrent calls with
	// one key inside the process before they reach the database.
	runner, err := idempotency.NewRunner(store, idempotency.WithLease(30*time.Second))
	if err != nil {
		return summary{}, err
	}
	prov := &provider{latency: 50 * time.Millisecond}
	svc := &payments{runner: runner, provider: prov}

	// Keys are the client's: here one per order, unique to this run.
	runID := newRunID()
	key := func(n int) string { return fmt.Sprintf("order-%s-%d", runID, n) }
	card := "4242424242424242"

	// 1. The first call charges.
	first, err := svc.Pay(ctx, key(1), chargeRequest{Order: "1", Amount: 4200, Card: card})
	if err != nil {
		return summary{}, fmt.Errorf("first call: %w", err)
	}
	fmt.Fprintf(out, "pay %s: charged %s (%d cents)\n", key(1), first.ID, first.Amount)

	// 2. The client did not get the answer and retries: the charge is replayed.
	again, err := svc.Pay(ctx, key(1), chargeRequest{Order: "1", Amount: 4200, Card: card})
	if err != nil {
		return summary{}, fmt.Errorf("retry: %w", err)
	}
	fmt.Fprintf(out, "retry of %s: replayed %s, provider charges so far: %d\n", key(1), again.ID, prov.charges.Load())

	// 3. Five concurrent calls with one key: one charge, five identical answers.
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() {
			c, err := svc.Pay(ctx, key(2), chargeRequest{Order: "2", Amount: 1500, Card: card})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			ids[c.ID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return summary{}, fmt.Errorf("concurrent calls: %w", err)
	}
	fmt.Fprintf(out, "5 concurrent calls of %s: %d distinct charge(s) %v\n", key(2), len(ids), ids)

	// 4. Another process sharing the database replays as well.
	otherRunner, err := idempotency.NewRunner(store)
	if err != nil {
		return summary{}, err
	}
	other := &payments{runner: otherRunner, provider: prov}
	replayed, err := other.Pay(ctx, key(1), chargeRequest{Order: "1", Amount: 4200, Card: card})
	if err != nil {
		return summary{}, fmt.Errorf("second process: %w", err)
	}
	fmt.Fprintf(out, "second process, %s: replayed %s\n", key(1), replayed.ID)

	// 5. The same key for another payment is a client bug: refused, nothing charged.
	_, err = svc.Pay(ctx, key(1), chargeRequest{Order: "1", Amount: 9900, Card: card})
	if !errors.Is(err, idempotency.ErrFingerprintMismatch) {
		return summary{}, fmt.Errorf("key reused for another amount: got %v, want ErrFingerprintMismatch", err)
	}
	fmt.Fprintf(out, "%s with another amount: refused (%v)\n", key(1), err)

	// 6. A declined card is final: stored and replayed, the card is not tried again.
	for i := range 2 {
		_, err = svc.Pay(ctx, key(3), chargeRequest{Order: "3", Amount: 700, Card: "declined"})
		var final *idempotency.FinalError
		switch {
		case i == 0 && errors.Is(err, errDeclined):
			fmt.Fprintf(out, "pay %s: %v\n", key(3), err)
		case i == 1 && errors.As(err, &final) && final.Replayed:
			fmt.Fprintf(out, "retry of %s: replayed the decline (%v)\n", key(3), err)
		default:
			return summary{}, fmt.Errorf("declined card, call %d: unexpected %v", i+1, err)
		}
	}

	// 7. An outage is not final: the claim is released and the retry charges.
	prov.outages.Store(1)
	_, err = svc.Pay(ctx, key(4), chargeRequest{Order: "4", Amount: 300, Card: card})
	if !errors.Is(err, errUnavailable) {
		return summary{}, fmt.Errorf("outage: got %v, want errUnavailable", err)
	}
	fmt.Fprintf(out, "pay %s: %v (claim released)\n", key(4), err)
	c, err := svc.Pay(ctx, key(4), chargeRequest{Order: "4", Amount: 300, Card: card})
	if err != nil {
		return summary{}, fmt.Errorf("retry after outage: %w", err)
	}
	fmt.Fprintf(out, "retry of %s: charged %s\n", key(4), c.ID)

	s := summary{Charges: prov.charges.Load(), Declines: prov.declines.Load(), Outages: prov.outageCalls.Load()}
	fmt.Fprintf(out, "provider: %d charges, %d decline, %d outage for 4 keys and 13 calls\n",
		s.Charges, s.Declines, s.Outages)
	return s, nil
}

// payments is the application's payment service.
type payments struct {
	runner   *idempotency.Runner
	provider *provider
}

// Pay charges req once per key. The request's JSON is its fingerprint: the
// same key with another request gets idempotency.ErrFingerprintMismatch.
//
// The charge is an external effect, outside the database: if this process
// dies after the provider charged and before the result is stored, the next
// call with the key charges again once the lease (30 s) has expired. Pass the
// key to the provider as its own idempotency key, as real payment APIs
// accept, to close that gap; effects that live in the same database close it
// with idempotency.WithTransaction instead.
func (s *payments) Pay(ctx context.Context, key string, req chargeRequest) (charge, error) {
	input, err := json.Marshal(req)
	if err != nil {
		return charge{}, err
	}
	return idempotency.Do(ctx, s.runner, "payment:"+key, func(ctx context.Context) (charge, error) {
		c, err := s.provider.Charge(ctx, key, req)
		if errors.Is(err, errDeclined) {
			return charge{}, idempotency.Final(err) // the answer for this key, for good
		}
		return c, err // other errors release the key: the next call tries again
	}, idempotency.WithFingerprint(input))
}

var (
	errDeclined    = errors.New("card declined")
	errUnavailable = errors.New("payment provider unavailable")
)

// provider stands in for a payment provider's API, with some latency.
type provider struct {
	latency     time.Duration
	charges     atomic.Int64
	declines    atomic.Int64
	outages     atomic.Int64 // calls still to fail with errUnavailable
	outageCalls atomic.Int64
}

func (p *provider) Charge(ctx context.Context, key string, req chargeRequest) (charge, error) {
	select {
	case <-time.After(p.latency):
	case <-ctx.Done():
		return charge{}, ctx.Err()
	}
	if p.outages.Add(-1) >= 0 {
		p.outageCalls.Add(1)
		return charge{}, errUnavailable
	}
	p.outages.Store(0)
	if req.Card == "declined" {
		p.declines.Add(1)
		return charge{}, errDeclined
	}
	n := p.charges.Add(1)
	return charge{ID: fmt.Sprintf("ch_%03d", n), Amount: req.Amount}, nil
}

func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
