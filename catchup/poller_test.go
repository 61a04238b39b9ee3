package catchup_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

type nopSource struct{}

func (nopSource) List(context.Context, string) (catchup.Page, error) { return catchup.Page{}, nil }

// sqlite opens the stores of a test on a SQLite file.
func sqlite(t *testing.T) (*sql.DB, *sqlcatchup.Store, *sqlstore.Store) {
	t.Helper()
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "c.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlcatchup.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	idem, err := sqlstore.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := idem.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE effects (event_id TEXT, type TEXT)`); err != nil {
		t.Fatal(err)
	}
	return db, store, idem
}

func TestConstructorErrors(t *testing.T) {
	t.Parallel()
	db, store, idem := sqlite(t)
	fn := func(context.Context, steadfast.Tx, catchup.Event) error { return nil }
	pol, err := retry.New()
	if err != nil {
		t.Fatal(err)
	}
	poller := func(opts ...catchup.Option) error {
		_, err := catchup.NewPoller("src", nopSource{}, store, idem, fn, opts...)
		return err
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"empty source", func() error { _, err := catchup.NewPoller("", nopSource{}, store, idem, fn); return err }(), `catchup: NewPoller: source name "" must be 1 to 255 bytes of UTF-8 without NUL`},
		{"source with NUL", func() error { _, err := catchup.NewPoller("a\x00", nopSource{}, store, idem, fn); return err }(), `catchup: NewPoller: source name "a\x00" must be 1 to 255 bytes of UTF-8 without NUL`},
		{"consumer too long", poller(catchup.WithConsumer(strings.Repeat("c", 256))), `catchup: NewPoller: WithConsumer: consumer name "cccccccccccccccccccccccccccccccccccccccc" must be 1 to 255 bytes of UTF-8 without NUL`},
		{"nil source", func() error { _, err := catchup.NewPoller("s", nil, store, idem, fn); return err }(), "catchup: NewPoller: nil Source"},
		{"nil store", func() error { _, err := catchup.NewPoller("s", nopSource{}, nil, idem, fn); return err }(), "catchup: NewPoller: nil Store"},
		{"nil inbox", func() error { _, err := catchup.NewPoller("s", nopSource{}, store, nil, fn); return err }(), "catchup: NewPoller: nil Inbox"},
		{"nil fn", func() error { _, err := catchup.NewPoller("s", nopSource{}, store, idem, nil); return err }(), "catchup: NewPoller: nil HandlerFunc"},
		{"typed nil store", func() error {
			_, err := catchup.NewPoller("s", nopSource{}, (*sqlcatchup.Store)(nil), idem, fn)
			return err
		}(), "catchup: NewPoller: nil Store"},
		{"typed nil inbox", func() error {
			_, err := catchup.NewPoller("s", nopSource{}, store, (*sqlstore.Store)(nil), fn)
			return err
		}(), "catchup: NewPoller: nil Inbox"},
		{"typed nil source", func() error {
			_, err := catchup.NewPoller("s", (*catchup.HTTPSource)(nil), store, idem, fn)
			return err
		}(), "catchup: NewPoller: nil Source"},
		{"nil option", poller(nil), "catchup: NewPoller: option 0 is nil"},
		{"option of another constructor", poller(catchup.WithPageSize("limit", 10)), "catchup: NewPoller: WithPageSize applies to NewHTTPSource, not NewPoller"},
		{"bad value", poller(catchup.WithMaxAttempts(0)), "catchup: NewPoller: WithMaxAttempts: 0 must be at least 1"},
		{"nil policy", poller(catchup.WithRetry(nil)), "catchup: NewPoller: WithRetry: nil *retry.Policy"},
		{"nil logger", poller(catchup.WithLogger(nil)), "catchup: NewPoller: WithLogger: nil *slog.Logger"},
		{"nil extractor", poller(catchup.WithEventID(nil)), "catchup: NewPoller: WithEventID: nil function"},
		{"interval alone", poller(catchup.WithPollInterval(time.Minute)), "catchup: NewPoller: WithPollInterval 1m0s must be shorter than the lease (30s, WithLease's default)"},
		{"lease alone", poller(catchup.WithLease(5 * time.Second)), "catchup: NewPoller: WithLease 5s must be longer than the poll interval (10s, WithPollInterval's default)"},
		{"both", poller(catchup.WithLease(5*time.Second), catchup.WithPollInterval(6*time.Second)), "catchup: NewPoller: WithPollInterval 6s must be shorter than WithLease 5s"},
		{"source nil client", func() error { _, err := catchup.NewHTTPSource(nil, "http://x"); return err }(), "catchup: NewHTTPSource: nil *http.Client (pass http.DefaultClient for the default)"},
		{"source bad URL", func() error { _, err := catchup.NewHTTPSource(http.DefaultClient, "/v1/events"); return err }(), `catchup: NewHTTPSource: "/v1/events" is not an absolute http(s) URL`},
		{"source poller option", func() error {
			_, err := catchup.NewHTTPSource(http.DefaultClient, "http://x", catchup.WithRetry(pol))
			return err
		}(), "catchup: NewHTTPSource: WithRetry applies to NewPoller, not NewHTTPSource"},
		{"refetcher nil guard", func() error { _, err := catchup.NewRefetcher(db, nil, nil, nil, nil); return err }(), "catchup: NewRefetcher: nil Guard"},
		{"store nil db", func() error { _, err := sqlcatchup.New(nil, steadfast.SQLite); return err }(), "sqlcatchup: New: nil *sql.DB"},
		{"store unknown dialect", func() error { _, err := sqlcatchup.New(db, steadfast.Dialect(99)); return err }(), "sqlcatchup: New: unknown dialect " + steadfast.Dialect(99).String()},
		{"store bad table", func() error { _, err := sqlcatchup.New(db, steadfast.SQLite, sqlcatchup.WithTable("a-b")); return err }(), `sqlcatchup: New: WithTable: table name "a-b": want name or schema.name, each part an identifier [A-Za-z_][A-Za-z0-9_]{0,62}`},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.name, tt.err, tt.want)
		}
	}
	p, err := catchup.NewPoller("src", nopSource{}, store, idem, fn, catchup.WithOverlapEvents(0), catchup.WithOverlap(0))
	if err != nil || p == nil {
		t.Errorf("valid options refused: %v", err)
	}
}

func TestNilNeverPanics(t *testing.T) {
	t.Parallel()
	var p *catchup.Poller
	ctx := context.Background()
	if p.Start(ctx) == nil || p.Stop(ctx) == nil {
		t.Error("nil *Poller: Start or Stop returned nil")
	}
	rec := httptest.NewRecorder()
	p.WebhookHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/", strings.NewReader("{}")))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("nil *Poller's webhook handler answered %d", rec.Code)
	}
	var s *catchup.HTTPSource
	if _, err := s.List(ctx, ""); err == nil {
		t.Error("nil *HTTPSource: List returned no error")
	}
	var r *catchup.Refetcher
	if err := r.Enqueue(ctx, nil, "x"); err == nil {
		t.Error("nil *Refetcher: Enqueue returned no error")
	}
	if _, _, err := r.ApplyVersion(ctx, nil, "x", 1); err == nil {
		t.Error("nil *Refetcher: ApplyVersion returned no error")
	}
	var st *sqlcatchup.Store
	if _, _, err := st.Lease(ctx, "s", "o", time.Second); err == nil {
		t.Error("nil *sqlcatchup.Store: Lease returned no error")
	}
	if err := st.Migrate(ctx); err == nil {
		t.Error("nil *sqlcatchup.Store: Migrate returned no error")
	}
	if _, err := st.ListDead(ctx, "", 0, 1); err == nil {
		t.Error("nil *sqlcatchup.Store: ListDead returned no error")
	}
	if _, err := st.Cursors(ctx); err == nil {
		t.Error("nil *sqlcatchup.Store: Cursors returned no error")
	}
	if err := st.SetCursor(ctx, "s", catchup.Now); err == nil {
		t.Error("nil *sqlcatchup.Store: SetCursor returned no error")
	}
	if _, err := st.PurgeFailing(ctx, time.Hour, 10); err == nil {
		t.Error("nil *sqlcatchup.Store: PurgeFailing returned no error")
	}
	if st.Table() != "" || st.Schema() != "" {
		t.Error("nil *sqlcatchup.Store: Table or Schema not empty")
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	_, store, idem := sqlite(t)
	p, err := catchup.NewPoller("src", nopSource{}, store, idem,
		func(context.Context, steadfast.Tx, catchup.Event) error { return nil }, catchup.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Errorf("second Start: %v", err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := p.Start(ctx); err == nil {
		t.Error("Start after Stop succeeded")
	}
	// Stop released the lease: another owner takes it at once.
	if _, held, err := store.Lease(ctx, "src", "other", time.Minute); err != nil || !held {
		t.Errorf("the lease was not released by Stop: held %v, %v", held, err)
	}
	q, err := catchup.NewPoller("src", nopSource{}, store, idem, func(context.Context, steadfast.Tx, catchup.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(ctx); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
}

func TestWebhookHandler(t *testing.T) {
	t.Parallel()
	db, store, idem := sqlite(t)
	fail := errors.New("downstream unavailable")
	p, err := catchup.NewPoller("src", nopSource{}, store, idem,
		func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
			if ev.Type == "fail" {
				return fail
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, type) VALUES (?, ?)`, ev.ID, ev.Type)
			return err
		},
		catchup.WithLogger(discard()),
		catchup.WithEventID(func(b []byte) (string, error) { // the id is nested, as some providers send it
			var v struct {
				Event struct{ ID string } `json:"event"`
			}
			err := jsonUnmarshal(b, &v)
			return v.Event.ID, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	h := p.WebhookHandler()
	tests := []struct {
		name   string
		body   string
		status int
		answer string
	}{
		{"first", `{"event":{"id":"e1"},"type":"paid","created":1700000000}`, 200, `{"id":"e1","applied":true}`},
		{"duplicate", `{"event":{"id":"e1"},"type":"paid"}`, 200, `{"id":"e1","applied":false}`},
		{"another", `{"event":{"id":"e2"},"type":"refunded"}`, 200, `{"id":"e2","applied":true}`},
		{"handler fails", `{"event":{"id":"e3"},"type":"fail"}`, 500, ""},
		{"no id", `{"id":"top-level, not where the extractor looks"}`, 400, ""},
		{"not JSON", `<xml/>`, 400, ""},
		{"too large", `{"event":{"id":"e4"},"pad":"` + strings.Repeat("x", 1<<20) + `"}`, 413, ""},
		// Refused for good, as the poller refuses them (the provider should
		// stop redelivering): an id the inbox cannot hold, a type too long
		// or not printable.
		{"id too long", `{"event":{"id":"` + strings.Repeat("x", 1025) + `"}}`, 400, ""},
		{"id not printable", `{"event":{"id":"e\u0000"}}`, 400, ""},
		{"type too long", `{"event":{"id":"e6"},"type":"` + strings.Repeat("t", 256) + `"}`, 400, ""},
		{"type not printable", `{"event":{"id":"e7"},"type":"a\nb"}`, 400, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(tt.body)))
		if rec.Code != tt.status || (tt.answer != "" && rec.Body.String() != tt.answer) {
			t.Errorf("%s: %d %s, want %d %s", tt.name, rec.Code, rec.Body.String(), tt.status, tt.answer)
		}
		if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: error answered as %q", tt.name, rec.Header().Get("Content-Type"))
		}
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM effects`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d effects, want 2 (%v)", n, err)
	}
	// The failed event was not marked: its redelivery applies it.
	first, err := markedBefore(db, idem, "src", "e3")
	if err != nil || !first {
		t.Errorf("the failed event was marked processed (%v)", err)
	}
	// A store that fails: 503.
	db.Close()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(`{"event":{"id":"e5"}}`)))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("closed database: %d", rec.Code)
	}
}

// markedBefore reports whether id would be marked for the first time now
// (without keeping the mark).
func markedBefore(db *sql.DB, idem *sqlstore.Store, consumer, id string) (bool, error) {
	tx, err := db.Begin()
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	return idem.MarkProcessed(context.Background(), tx, consumer, id)
}

// TestWebhookHandlerInMiddlewareTransaction: behind idempotency.Middleware
// in transactional mode, the webhook handler works in the request's
// transaction (on SQLite a second transaction would wait for the first's
// write lock until busy): the record, the inbox row and the effect commit
// together. A redelivery with the same webhook-id is replayed; another
// delivery of the same event (a new webhook-id) is found in the inbox.
func TestWebhookHandlerInMiddlewareTransaction(t *testing.T) {
	t.Parallel()
	db, store, idem := sqlite(t)
	p, err := catchup.NewPoller("src", nopSource{}, store, idem,
		func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, type) VALUES (?, ?)`, ev.ID, ev.Type)
			return err
		}, catchup.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	mw, err := idempotency.Middleware(idem, idempotency.WithTransaction(),
		idempotency.WithKeySource(idempotency.HeaderKey("webhook-id")), idempotency.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	h := mw(p.WebhookHandler())
	post := func(webhookID, body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(body))
		req.Header.Set("webhook-id", webhookID)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := post("msg_1", `{"id":"evt_1","type":"paid"}`); code != 200 || body != `{"id":"evt_1","applied":true}` {
		t.Fatalf("first delivery: %d %s", code, body)
	}
	if code, body := post("msg_1", `{"id":"evt_1","type":"paid"}`); code != 200 || body != `{"id":"evt_1","applied":true}` {
		t.Errorf("redelivery (replayed): %d %s", code, body)
	}
	if code, body := post("msg_2", `{"id":"evt_1","type":"paid"}`); code != 200 || body != `{"id":"evt_1","applied":false}` {
		t.Errorf("the same event under another webhook-id: %d %s", code, body)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM effects`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d effects, want 1 (%v)", n, err)
	}
}

// slowSource asks for a long delay, as a provider's 429 with a long
// Retry-After does, and records that it was called.
type slowSource struct{ called chan struct{} }

func (s slowSource) List(ctx context.Context, _ string) (catchup.Page, error) {
	select {
	case s.called <- struct{}{}:
	default:
	}
	return catchup.Page{}, retry.After(errors.New("HTTP 429"), 20*time.Second)
}

// TestStopDuringRetryAfter: Stop does not wait for a fetch's Retry-After.
func TestStopDuringRetryAfter(t *testing.T) {
	t.Parallel()
	_, store, idem := sqlite(t)
	src := slowSource{called: make(chan struct{}, 1)}
	p, err := catchup.NewPoller("src", src, store, idem, func(context.Context, steadfast.Tx, catchup.Event) error { return nil },
		catchup.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-src.called
	start := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v while the source asked to wait 20s", d)
	}
}

// TestStopWithEndedContext: when Stop's context ends while a page is being
// applied, the handler's context is cancelled, the page's transaction is
// rolled back and Stop returns the context's error once the poller has
// stopped: nothing was applied, the cursor has not moved, no attempt was
// counted, and the lease was released.
func TestStopWithEndedContext(t *testing.T) {
	t.Parallel()
	db, store, idem := sqlite(t)
	srv := httptest.NewServer(&list{n: 5, shape: "cursor"})
	defer srv.Close()
	src, err := catchup.NewHTTPSource(srv.Client(), srv.URL+"/v1/events", catchup.WithPageSize("limit", 10))
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	p, err := catchup.NewPoller("src", src, store, idem, func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, type) VALUES (?, ?)`, ev.ID, ev.Type); err != nil {
			return err
		}
		if ev.ID == "evt_0002" {
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}, catchup.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the context's error", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM effects`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d effects committed (%v)", n, err)
	}
	cs, err := store.Cursors(context.Background())
	if err != nil || len(cs) != 1 || cs[0].Cursor != "" || cs[0].Failing != 0 || cs[0].Owner != "" {
		t.Errorf("after Stop: %+v, %v", cs, err)
	}
}
