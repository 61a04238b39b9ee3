// Command webhook-receiver receives signed payment webhooks and applies each
// event to its order exactly once, in order, on PostgreSQL.
//
// A request goes through three guards before it changes anything:
//
//  1. webhook.NewMiddleware verifies the Standard Webhooks signature over the
//     raw body: a forged or replayed-later request gets 401;
//  2. idempotency.Middleware, keyed by the webhook-id header, in
//     transactional mode on idempotency/sqlstore: the delivery's claim, the
//     handler's writes and the stored response commit in one transaction,
//     so a redelivery (the sender did not get our 200) replays the stored
//     response, a copy sent while the first is still running waits for that
//     replay (WithWait), and a crash before the commit leaves nothing behind;
//  3. inside that transaction, the inbox (MarkProcessed, keyed by the event's
//     own id, for an event the provider sends again under a new webhook-id)
//     and the ordering guard (ApplyVersion: an event older than the last one
//     applied to its order is ignored).
//
// By default it starts the receiver on a loopback port, sends it a storm
// of deliveries (duplicates, concurrent duplicates, a reordering, a resend
// under a new id, a forgery), prints what happened and exits:
//
//	go run ./examples/webhook-receiver -postgres 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//
// With -serve it only serves, on -addr, until interrupted; sign requests with
// the secret it prints (any Standard Webhooks library or webhook.Signer).
// The -postgres flag defaults to $TEST_POSTGRES_URL, else to the address above.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/webhook"
)

// demoSecret is the signing secret shared with the sender. A real receiver
// reads it from its configuration, and accepts two during a rotation.
var demoSecret = webhook.EncodeSecret([]byte("steadfast example webhook secret"))

func main() {
	var cfg config
	flag.StringVar(&cfg.postgres, "postgres", envOr("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flag.StringVar(&cfg.prefix, "prefix", "shop", "prefix of the tables it creates")
	flag.BoolVar(&cfg.serve, "serve", false, "serve on -addr until interrupted instead of playing the demo")
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "address to listen on with -serve")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}

type config struct {
	postgres string
	prefix   string
	serve    bool
	addr     string
}

// summary is what the demo observed, for its test.
type summary struct {
	Deliveries int            // requests sent
	Statuses   map[int]int    // responses by status
	Replayed   int            // responses replayed by the idempotency middleware
	Results    map[string]int // handler results: applied, duplicate, stale
	Effects    map[string]int // effects recorded per event id
	Status     string         // the order's final status
}

// event is the body of a payment webhook.
type event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	OrderID string `json:"order_id"`
	Version int64  `json:"version"` // per order, increasing
}

// receiver applies payment events to orders.
type receiver struct {
	store  *sqlstore.Store
	orders string // table of orders
	events string // table of applied events: the side effects
}

func run(ctx context.Context, cfg config, out io.Writer) (summary, error) {
	db, err := sql.Open("pgx", cfg.postgres)
	if err != nil {
		return summary{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(10)

	store, err := sqlstore.New(db, steadfast.Postgres, sqlstore.WithTable(cfg.prefix+"_webhooks"))
	if err != nil {
		return summary{}, err
	}
	if err := store.Migrate(ctx); err != nil {
		return summary{}, err
	}
	rc := &receiver{store: store, orders: cfg.prefix + "_orders", events: cfg.prefix + "_order_events"}
	if err := rc.migrate(ctx, db); err != nil {
		return summary{}, err
	}
	handler, err := rc.routes()
	if err != nil {
		return summary{}, err
	}

	if cfg.serve {
		return summary{}, serve(ctx, cfg.addr, handler, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return summary{}, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	defer func() {
		_ = srv.Shutdown(context.Background())
		<-done
	}()
	return demo(ctx, db, rc, "http://"+ln.Addr().String()+"/webhooks/payments", out)
}

// routes builds the receiver: verification → idempotency → handler.
func (rc *receiver) routes() (http.Handler, error) {
	verifier, err := webhook.NewVerifier([]string{demoSecret})
	if err != nil {
		return nil, err
	}
	verify, err := webhook.NewMiddleware(verifier)
	if err != nil {
		return nil, err
	}
	once, err := idempotency.Middleware(rc.store,
		idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")),
		idempotency.WithTransaction(),
		// A copy of a delivery that is being processed waits (up to 5 s)
		// for its replay instead of getting 409 at once: the sender is
		// answered 2xx and does not redeliver.
		idempotency.WithWait(5*time.Second),
	)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/payments", verify(once(http.HandlerFunc(rc.handle))))
	return mux, nil
}

// handle applies one event. It runs inside the transaction that the
// idempotency middleware opened: everything it writes commits together with
// the delivery's record, or not at all.
func (rc *receiver) handle(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tx, err := idempotency.TxFrom(ctx)
	if err != nil {
		// The middleware was built without WithTransaction: a bug of ours,
		// not the sender's; 5xx so that it redelivers once it is fixed.
		http.Error(w, "no transaction", http.StatusInternalServerError)
		return
	}
	var ev event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.ID == "" || ev.OrderID == "" {
		http.Error(w, "malformed event", http.StatusBadRequest) // 4xx: stored, not retried
		return
	}
	result, err := rc.apply(ctx, tx, ev)
	if err != nil {
		// 5xx: the transaction rolls back and the claim is released, so the
		// sender's next delivery runs the handler again.
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"event":%q,"result":%q}`+"\n", ev.ID, result)
}

func (rc *receiver) apply(ctx context.Context, tx *sql.Tx, ev event) (string, error) {
	// The inbox: has this event been processed, under any webhook-id?
	first, err := rc.store.MarkProcessed(ctx, tx, "orders", ev.ID)
	if err != nil || !first {
		return "duplicate", err
	}
	// The ordering guard: apply only events newer than the last applied.
	applied, err := rc.store.ApplyVersion(ctx, tx, "order:"+ev.OrderID, ev.Version)
	if err != nil || !applied {
		return "stale", err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE "+rc.orders+" SET status = $1, version = $2 WHERE id = $3",
		ev.Type, ev.Version, ev.OrderID); err != nil {
		return "", err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+rc.events+" (event_id, order_id) VALUES ($1, $2)",
		ev.ID, ev.OrderID); err != nil {
		return "", err
	}
	return "applied", nil
}

func (rc *receiver) migrate(ctx context.Context, db *sql.DB) error {
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS " + rc.orders + " (id text PRIMARY KEY, status text NOT NULL, version bigint NOT NULL)",
		"CREATE TABLE IF NOT EXISTS " + rc.events + " (event_id text NOT NULL, order_id text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// demo plays the payment provider: it sends deliveries to url and reports.
func demo(ctx context.Context, db *sql.DB, rc *receiver, url string, out io.Writer) (summary, error) {
	runID := newRunID()
	order := "ord_" + runID
	if _, err := db.ExecContext(ctx, "INSERT INTO "+rc.orders+" (id, status, version) VALUES ($1, 'created', 0)", order); err != nil {
		return summary{}, err
	}
	signer, err := webhook.NewSigner(demoSecret)
	if err != nil {
		return summary{}, err
	}
	sender := &sender{url: url, signer: signer, client: &http.Client{Timeout: 10 * time.Second},
		sum: summary{Statuses: map[int]int{}, Results: map[string]int{}}}
	ev := func(v int64, typ string) event {
		return event{ID: fmt.Sprintf("evt_%s_%d", runID, v), Type: typ, OrderID: order, Version: v}
	}
	authorized, captured, settled := ev(1, "payment.authorized"), ev(2, "payment.captured"), ev(3, "payment.settled")

	steps := []struct {
		what   string
		msgID  string
		ev     event
		copies int  // concurrent copies of the delivery
		forge  bool // signed with another secret
	}{
		{"deliver authorized", "msg_" + runID + "_1", authorized, 1, false},
		{"redeliver authorized (our 200 was lost)", "msg_" + runID + "_1", authorized, 1, false},
		{"deliver settled before captured", "msg_" + runID + "_3", settled, 1, false},
		{"deliver captured, 3 copies at once", "msg_" + runID + "_2", captured, 3, false},
		{"resend authorized under a new webhook-id", "msg_" + runID + "_1b", authorized, 1, false},
		{"forged settled", "msg_" + runID + "_9", settled, 1, true},
	}
	for _, st := range steps {
		lines, err := sender.send(ctx, st.msgID, st.ev, st.copies, st.forge)
		if err != nil {
			return summary{}, fmt.Errorf("%s: %w", st.what, err)
		}
		fmt.Fprintf(out, "%-42s %s\n", st.what+":", lines)
	}

	s := sender.sum
	if err := db.QueryRowContext(ctx, "SELECT status FROM "+rc.orders+" WHERE id = $1", order).Scan(&s.Status); err != nil {
		return summary{}, err
	}
	rows, err := db.QueryContext(ctx, "SELECT event_id, count(*) FROM "+rc.events+" WHERE order_id = $1 GROUP BY event_id", order)
	if err != nil {
		return summary{}, err
	}
	defer rows.Close()
	s.Effects = map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return summary{}, err
		}
		s.Effects[id] = n
	}
	if err := rows.Err(); err != nil {
		return summary{}, err
	}
	fmt.Fprintf(out, "%d deliveries: %d replayed by the middleware, %d duplicate and %d stale events skipped, %d forged refused\n",
		s.Deliveries, s.Replayed, s.Results["duplicate"], s.Results["stale"], s.Statuses[http.StatusUnauthorized])
	fmt.Fprintf(out, "order %s: %s; effects per applied event: %v\n", order, s.Status, s.Effects)
	return s, nil
}

// sender signs and posts deliveries, as a payment provider does.
type sender struct {
	url    string
	signer *webhook.Signer
	client *http.Client

	mu  sync.Mutex
	sum summary
}

// send posts copies concurrent copies of one delivery and describes the
// responses.
func (s *sender) send(ctx context.Context, msgID string, ev event, copies int, forge bool) (string, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	signer := s.signer
	if forge {
		if signer, err = webhook.NewSigner(webhook.EncodeSecret([]byte("not the provider's secret"))); err != nil {
			return "", err
		}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers []string
		first   error
	)
	for range copies {
		wg.Go(func() {
			answer, err := s.post(ctx, signer, msgID, body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			answers = append(answers, answer)
		})
	}
	wg.Wait()
	return fmt.Sprint(answers), first
}

func (s *sender) post(ctx context.Context, signer *webhook.Signer, msgID string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := signer.SetHeaders(req.Header, msgID, time.Now(), body); err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var res struct {
		Result string `json:"result"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	replayed := resp.Header.Get(idempotency.ReplayedHeader) == "true"

	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Deliveries++
	s.sum.Statuses[resp.StatusCode]++
	answer := fmt.Sprint(resp.StatusCode)
	switch {
	case replayed:
		s.sum.Replayed++
		answer += " replayed"
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(raw, &res); err != nil {
			return "", fmt.Errorf("response %q: %w", raw, err)
		}
		s.sum.Results[res.Result]++
		answer += " " + res.Result
	case resp.StatusCode == http.StatusUnauthorized:
		answer += " refused"
	default:
		return "", errors.New("unexpected response: " + answer + " " + string(raw))
	}
	return answer, nil
}

// serve runs the receiver on addr until ctx ends.
func serve(ctx context.Context, addr string, handler http.Handler, out io.Writer) error {
	srv := &http.Server{Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(out, "listening on http://%s/webhooks/payments, secret %s\n", addr, demoSecret)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	<-errc
	return err
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
