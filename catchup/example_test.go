package catchup_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// fakeProvider is a payment provider's events list, Stripe's shape:
// GET /v1/events?limit=&starting_after= lists events oldest first as
// {"data": [...], "has_more": bool}.
func fakeProvider(events []string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := 0
		for i, body := range events {
			if strings.Contains(body, `"`+r.URL.Query().Get("starting_after")+`"`) {
				start = i + 1
			}
		}
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		end := min(start+limit, len(events))
		fmt.Fprintf(w, `{"object":"list","data":[%s],"has_more":%t}`, strings.Join(events[start:end], ","), end < len(events))
	}))
}

// The poller and the webhook route apply events with one handler and mark
// them in one inbox: each event is applied once, by whichever path comes
// first. Here two of five webhooks were lost; the poller finds them in the
// provider's events list.
func Example() {
	var events []string
	for i := 1; i <= 5; i++ {
		events = append(events, fmt.Sprintf(`{"id":"evt_%d","type":"charge.succeeded","created":%d}`, i, 1_700_000_000+i))
	}
	provider := fakeProvider(events)
	defer provider.Close()

	dir, _ := os.MkdirTemp("", "catchup-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, _ := sqlcatchup.New(db, steadfast.SQLite) // the cursor, the lease, dead letters
	inbox, _ := sqlstore.New(db, steadfast.SQLite)   // the inbox of both paths
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if err := inbox.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	_, _ = db.Exec(`CREATE TABLE charges (event_id TEXT PRIMARY KEY, via TEXT)`)

	// One handler for both paths: it writes in the transaction that marks
	// the event in the inbox (and, when polled, advances the cursor).
	apply := func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
		via := "poller"
		if ev.Cursor == "" {
			via = "webhook"
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO charges (event_id, via) VALUES (?, ?)`, ev.ID, via)
		return err
	}
	src, err := catchup.NewHTTPSource(http.DefaultClient, provider.URL+"/v1/events")
	if err != nil {
		log.Fatal(err)
	}
	poller, err := catchup.NewPoller("payments", src, store, inbox, apply,
		catchup.WithPollInterval(50*time.Millisecond), catchup.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		log.Fatal(err)
	}
	webhooks := poller.WebhookHandler() // mount it behind webhook verification
	deliver := func(body string) {
		rec := httptest.NewRecorder()
		webhooks.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/webhooks/payments", strings.NewReader(body)))
		fmt.Println("webhook:", rec.Code, rec.Body.String())
	}
	deliver(events[0])
	deliver(events[0]) // a redelivery
	deliver(events[2])
	deliver(events[4]) // evt_2 and evt_4 are never delivered

	if err := poller.Start(ctx); err != nil {
		log.Fatal(err)
	}
	for n := 0; n < 5; {
		time.Sleep(20 * time.Millisecond)
		_ = db.QueryRow(`SELECT COUNT(*) FROM charges`).Scan(&n)
	}
	_ = poller.Stop(ctx)
	rows, _ := db.Query(`SELECT event_id, via FROM charges ORDER BY event_id`)
	for rows.Next() {
		var id, via string
		_ = rows.Scan(&id, &via)
		fmt.Println(id, "applied by the", via)
	}
	_ = rows.Close()
	deliver(events[3]) // evt_4's webhook arrives at last: nothing to do

	// Output:
	// webhook: 200 {"id":"evt_1","applied":true}
	// webhook: 200 {"id":"evt_1","applied":false}
	// webhook: 200 {"id":"evt_3","applied":true}
	// webhook: 200 {"id":"evt_5","applied":true}
	// evt_1 applied by the webhook
	// evt_2 applied by the poller
	// evt_3 applied by the webhook
	// evt_4 applied by the poller
	// evt_5 applied by the webhook
	// webhook: 200 {"id":"evt_4","applied":false}
}

// orderAPI is a provider's orders API: GET /v1/orders/{id} returns the
// order's current state with its version.
type orderAPI struct {
	mu     sync.Mutex
	orders map[string]order
}

type order struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	Status  string `json:"status"`
}

func (a *orderAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	o, ok := a.orders[strings.TrimPrefix(r.URL.Path, "/v1/orders/")]
	a.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(o)
}

// Refetch on doubt: an order's events carry consecutive versions. Version 3
// is lost; when version 4 arrives, the guard reports the gap and enqueues a
// refetch through the outbox, in the event's transaction. The relay hands it
// to the Refetcher, which fetches the order from the provider and applies it
// at the order's own version (5): the late version 3 is then stale, and the
// next real event (6) applies.
func ExampleRefetcher() {
	api := &orderAPI{orders: map[string]order{"ord_1": {ID: "ord_1", Version: 5, Status: "delivered"}}}
	provider := httptest.NewServer(api)
	defer provider.Close()

	dir, _ := os.MkdirTemp("", "catchup-refetch")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	guard, _ := sqlstore.New(db, steadfast.SQLite) // the ordering guard
	out, _ := sqloutbox.New(db, steadfast.SQLite)  // the outbox the refetches go through
	if err := guard.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if err := out.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	_, _ = db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, version INTEGER, status TEXT)`)
	save := func(ctx context.Context, tx steadfast.Tx, o order) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO orders (id, version, status) VALUES (?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET version = excluded.version, status = excluded.status`, o.ID, o.Version, o.Status)
		return err
	}

	fetch := func(ctx context.Context, entity string) (catchup.Object, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, provider.URL+"/v1/orders/"+entity, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return catchup.Object{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return catchup.Object{}, err
		}
		var o order
		if err := json.Unmarshal(body, &o); err != nil {
			return catchup.Object{}, err
		}
		return catchup.Object{Version: o.Version, Payload: body}, nil
	}
	refetched := make(chan order, 1)
	refetcher, err := catchup.NewRefetcher(db, guard, out, fetch,
		func(ctx context.Context, tx steadfast.Tx, entity string, obj catchup.Object) error {
			var o order
			if err := json.Unmarshal(obj.Payload, &o); err != nil {
				return err
			}
			refetched <- o
			return save(ctx, tx, o)
		})
	if err != nil {
		log.Fatal(err)
	}
	relay, err := outbox.NewRelay(out, refetcher, outbox.WithPollInterval(20*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = relay.Stop(ctx) }()

	// The webhook handler's work for one order event.
	event := func(o order) {
		tx, _ := db.BeginTx(ctx, nil)
		applied, gap, err := refetcher.ApplyVersion(ctx, tx, o.ID, o.Version)
		if err != nil {
			log.Fatal(err)
		}
		if applied {
			_ = save(ctx, tx, o)
		}
		_ = tx.Commit()
		fmt.Printf("event v%d %s: applied %v, gap %v\n", o.Version, o.Status, applied, gap)
	}
	event(order{"ord_1", 1, "created"})
	event(order{"ord_1", 2, "paid"})
	event(order{"ord_1", 4, "shipped"}) // v3 was lost: a refetch is enqueued
	o := <-refetched
	fmt.Printf("refetched v%d %s\n", o.Version, o.Status)
	for v := int64(0); v != 5; { // its transaction commits
		time.Sleep(10 * time.Millisecond)
		_ = db.QueryRow(`SELECT version FROM orders WHERE id = 'ord_1'`).Scan(&v)
	}
	event(order{"ord_1", 3, "packed"}) // late: older than the refetched state
	event(order{"ord_1", 6, "returned"})

	var status string
	_ = db.QueryRow(`SELECT status FROM orders WHERE id = 'ord_1'`).Scan(&status)
	fmt.Println("order:", status)

	// Output:
	// event v1 created: applied true, gap false
	// event v2 paid: applied true, gap false
	// event v4 shipped: applied true, gap true
	// refetched v5 delivered
	// event v3 packed: applied false, gap false
	// event v6 returned: applied true, gap false
	// order: returned
}
