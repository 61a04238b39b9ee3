package sqlcatchup_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/sqldb"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

var dialects = []steadfast.Dialect{steadfast.SQLite, steadfast.Postgres, steadfast.MySQL}

func uniq() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "cu_" + hex.EncodeToString(b[:])
}

// env is one test's database: the catchup store, the inbox and an effects
// table, all under one fresh prefix.
type env struct {
	t       testing.TB
	d       steadfast.Dialect
	dsn     string // what a child process opens
	prefix  string
	db      *sql.DB
	store   *sqlcatchup.Store
	idem    *sqlstore.Store
	effects string
}

func dsnFor(t testing.TB, d steadfast.Dialect) string {
	switch d {
	case steadfast.Postgres:
		return testenv.PostgresURL(t)
	case steadfast.MySQL:
		return testenv.MySQLURL(t)
	}
	return sqldb.SQLiteDSN(filepath.Join(t.TempDir(), "catchup.db"), 10*time.Second)
}

func driver(d steadfast.Dialect) string {
	switch d {
	case steadfast.Postgres:
		return "pgx"
	case steadfast.MySQL:
		return "mysql"
	}
	return "sqlite"
}

func openDB(t testing.TB, d steadfast.Dialect, dsn string, conns int) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver(d), dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	t.Cleanup(func() { db.Close() })
	return db
}

// newEnv makes the tables of a test on dialect d.
func newEnv(t testing.TB, d steadfast.Dialect) *env {
	t.Helper()
	e := &env{t: t, d: d, dsn: dsnFor(t, d), prefix: uniq()}
	e.db = openDB(t, d, e.dsn, 8)
	e.open(e.db)
	ctx := context.Background()
	if err := e.store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.idem.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec("CREATE TABLE " + e.effects + " (event_id VARCHAR(64) NOT NULL, via VARCHAR(16) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if d != steadfast.SQLite {
		t.Cleanup(func() {
			for _, tbl := range []string{e.effects, e.prefix, e.prefix + "_failed", e.prefix + "_idem", e.prefix + "_idem_inbox", e.prefix + "_idem_order"} {
				_, _ = e.db.Exec("DROP TABLE IF EXISTS " + tbl)
			}
		})
	}
	return e
}

// open makes the stores on db (in this process or a child).
func (e *env) open(db *sql.DB) {
	var err error
	if e.store, err = sqlcatchup.New(db, e.d, sqlcatchup.WithTable(e.prefix)); err != nil {
		e.t.Fatal(err)
	}
	if e.idem, err = sqlstore.New(db, e.d, sqlstore.WithTable(e.prefix+"_idem")); err != nil {
		e.t.Fatal(err)
	}
	e.effects = e.prefix + "_effects"
}

// inbox is the inbox of both paths: idempotency/sqlstore's.
func (e *env) inbox() catchup.Inbox { return e.idem }

func (e *env) q(s string) string {
	if e.d != steadfast.Postgres {
		return s
	}
	n := 0
	var b strings.Builder
	for _, c := range s {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// handler records one effect per call, in the event's transaction.
func (e *env) handler() catchup.HandlerFunc {
	ins := e.q("INSERT INTO " + e.effects + " (event_id, via) VALUES (?, ?)")
	return func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
		via := "poll"
		if ev.Cursor == "" {
			via = "webhook"
		}
		_, err := tx.ExecContext(ctx, ins, ev.ID, via)
		return err
	}
}

// effects returns the number of effects per event id.
func (e *env) effectCounts() map[string]int {
	e.t.Helper()
	rows, err := e.db.Query("SELECT event_id, COUNT(*) FROM " + e.effects + " GROUP BY event_id")
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			id string
			n  int
		)
		if err := rows.Scan(&id, &n); err != nil {
			e.t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) effectTotal() int {
	var n int
	if err := e.db.QueryRow("SELECT COUNT(*) FROM " + e.effects).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// cursor reads a source's stored cursor.
func (e *env) cursor(source string) string {
	var c string
	err := e.db.QueryRow(e.q("SELECT list_cursor FROM "+e.prefix+" WHERE source = ?"), source).Scan(&c)
	if err == sql.ErrNoRows {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// checkExactlyOnce fails unless every id in want has exactly one effect and
// no other id has any.
func (e *env) checkExactlyOnce(want []string) {
	e.t.Helper()
	got := e.effectCounts()
	missing, doubled := 0, 0
	for _, id := range want {
		switch n := got[id]; {
		case n == 0:
			missing++
			if missing <= 5 {
				e.t.Errorf("event %s never applied", id)
			}
		case n > 1:
			doubled++
			if doubled <= 5 {
				e.t.Errorf("event %s applied %d times", id, n)
			}
		}
	}
	if len(got) > len(want) {
		e.t.Errorf("%d distinct events applied, want %d", len(got), len(want))
	}
	if missing+doubled > 0 {
		e.t.Errorf("%d events missed, %d applied more than once, of %d", missing, doubled, len(want))
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// provider is a fake payment provider's events list, Stripe's shape: GET
// /v1/events?limit=&starting_after= lists the visible events after the
// given one, oldest first, {"data": [...], "has_more": bool}. Events can be
// hidden (not yet visible, as in an eventually consistent list) and
// revealed later, and requests can be failed.
type provider struct {
	srv *httptest.Server

	mu     sync.Mutex
	events []pevent // in list order
	index  map[string]int
	// fault, when set, may answer a request instead of the list.
	fault func(w http.ResponseWriter, r *http.Request) bool
	log   []request

	lists atomic.Int64
}

type pevent struct {
	id      string
	created time.Time
	visible bool
	body    []byte
}

type request struct {
	at      time.Time
	replica string
	status  int
	after   string
}

func newProvider(t testing.TB) *provider {
	p := &provider{index: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.list))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) url() string { return p.srv.URL + "/v1/events" }

var epoch = time.Now().Add(-24 * time.Hour).Truncate(time.Second)

func eventID(n int) string { return fmt.Sprintf("evt_%07d", n) }

func eventBody(id string, created time.Time) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": "order.paid", "created": created.Unix(), "data": map[string]any{"object": map[string]any{"id": "ord_" + id}}})
	return b
}

// add appends n visible events created now and returns their ids.
func (p *provider) add(n int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, n)
	for i := range ids {
		// Created a second apart, so that an overlap by time covers a
		// known number of events.
		id := eventID(len(p.events))
		at := epoch.Add(time.Duration(len(p.events)) * time.Second)
		p.index[id] = len(p.events)
		p.events = append(p.events, pevent{id: id, created: at, visible: true, body: eventBody(id, at)})
		ids[i] = id
	}
	return ids
}

// addRaw appends one visible event with the body given (any JSON value),
// listed after the event key (its id, or any unique key for an event
// without one).
func (p *provider) addRaw(key string, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at := epoch.Add(time.Duration(len(p.events)) * time.Second)
	p.index[key] = len(p.events)
	p.events = append(p.events, pevent{id: key, created: at, visible: true, body: body})
}

// hide and reveal change whether events are listed.
func (p *provider) setVisible(visible bool, ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		p.events[p.index[id]].visible = visible
	}
}

func (p *provider) body(id string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events[p.index[id]].body
}

func (p *provider) requests() []request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]request(nil), p.log...)
}

func (p *provider) list(w http.ResponseWriter, r *http.Request) {
	p.lists.Add(1)
	after := r.URL.Query().Get("starting_after")
	rec := request{at: time.Now(), replica: r.Header.Get("X-Replica"), after: after}
	p.mu.Lock()
	fault := p.fault
	p.mu.Unlock()
	if fault != nil {
		sw := &statusWriter{ResponseWriter: w}
		if fault(sw, r) {
			rec.status = sw.status
			p.mu.Lock()
			p.log = append(p.log, rec)
			p.mu.Unlock()
			return
		}
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 {
		limit = 10
	}
	p.mu.Lock()
	start := 0
	if after != "" {
		i, ok := p.index[after]
		if !ok {
			p.mu.Unlock()
			http.Error(w, "no such event", http.StatusBadRequest)
			return
		}
		start = i + 1
	}
	var data []json.RawMessage
	more := false
	for i := start; i < len(p.events); i++ {
		if !p.events[i].visible {
			continue
		}
		if len(data) == limit {
			more = true
			break
		}
		data = append(data, p.events[i].body)
	}
	rec.status = 200
	p.log = append(p.log, rec)
	p.mu.Unlock()
	if data == nil {
		data = []json.RawMessage{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "has_more": more})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// position returns an event's place in the list, or -1.
func (p *provider) position(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.index[id]; ok {
		return i
	}
	return -1
}

// deliver posts the webhook of id to h and fails the test unless it is
// answered 200.
func deliver(t testing.TB, h http.Handler, body []byte) {
	req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(string(body)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("webhook answered %d: %s", rec.Code, rec.Body.String())
	}
}

// watchCursor samples the stored cursor of source until stop is closed and
// checks, each time, that every event up to it was applied: the cursor
// never moves past an event not applied.
func (e *env) watchCursor(t *testing.T, p *provider, source string, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		checked := 0
		for {
			select {
			case <-stop:
				t.Logf("cursor checked %d times", checked)
				return
			case <-time.After(15 * time.Millisecond):
			}
			// The cursor first, then the effects: the effects read later
			// include at least what the cursor's transaction committed.
			c := e.cursor(source)
			if c == "" {
				continue
			}
			pos := p.position(c)
			got := e.effectCounts()
			p.mu.Lock()
			var missing []string
			for i := 0; i <= pos && i < len(p.events); i++ {
				if p.events[i].visible && got[p.events[i].id] == 0 {
					missing = append(missing, p.events[i].id)
				}
			}
			p.mu.Unlock()
			if len(missing) > 0 {
				sort.Strings(missing)
				t.Errorf("the cursor %s is past %d events not applied: %v", c, len(missing), missing[:min(5, len(missing))])
				return
			}
			checked++
		}
	}()
	return &wg
}
