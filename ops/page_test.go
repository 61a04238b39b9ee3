package ops_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/ops"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/ratelimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeOutbox is an outbox store in memory.
type fakeOutbox struct {
	mu       sync.Mutex
	recs     []outbox.Record
	requeued []string
	dropped  []string
	paused   []outbox.PausedDestination
	resumed  []string
}

func (f *fakeOutbox) Pauses(context.Context) ([]outbox.PausedDestination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]outbox.PausedDestination(nil), f.paused...), nil
}

func (f *fakeOutbox) Resume(_ context.Context, dests ...string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range dests {
		f.resumed = append(f.resumed, d)
		for i, p := range f.paused {
			if p.Destination == d {
				f.paused = append(f.paused[:i], f.paused[i+1:]...)
				n++
				break
			}
		}
	}
	return n, nil
}

func (f *fakeOutbox) Stats(context.Context) (outbox.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s outbox.Stats
	for _, r := range f.recs {
		switch r.State {
		case outbox.StatePending:
			s.Pending++
		case outbox.StateDead:
			s.Dead++
		}
	}
	return s, nil
}

func (f *fakeOutbox) ListDead(_ context.Context, topic string, after int64, limit int) ([]outbox.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []outbox.Record
	for _, r := range f.recs {
		if r.State == outbox.StateDead && r.Position > after && (topic == "" || r.Topic == topic) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeOutbox) Get(_ context.Context, id string) (outbox.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.recs {
		if r.ID == id {
			return r, nil
		}
	}
	return outbox.Record{}, fmt.Errorf("fake: %w", outbox.ErrNotFound)
}

func (f *fakeOutbox) Requeue(_ context.Context, ids ...string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requeued = append(f.requeued, ids...)
	return len(ids), nil
}

func (f *fakeOutbox) Discard(_ context.Context, ids ...string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = append(f.dropped, ids...)
	return len(ids), nil
}

func (f *fakeOutbox) touched() (requeued, dropped []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requeued...), append([]string(nil), f.dropped...)
}

func newFakeOutbox() *fakeOutbox {
	f := &fakeOutbox{}
	for i := range 3 {
		f.recs = append(f.recs, outbox.Record{
			Message: outbox.Message{
				ID: fmt.Sprintf("dead-%d", i), Topic: "orders", Key: "k",
				Headers: map[string]string{"Authorization": "Bearer sk_live_SECRET", "X-Api-Key": "KEYSECRET", "Content-Type": "application/json"},
				Payload: []byte(`{"amount":42}`),
			},
			Position: int64(i + 1), State: outbox.StateDead, Attempts: 10,
			LastError: "POST https://alice:PASSWORD@hooks.example.com/x: 503", DoneAt: time.Now().Add(-time.Minute),
		})
	}
	return f
}

// fakeIdem is an idempotency store whose records are set by the test.
type fakeIdem struct {
	mu       sync.Mutex
	recs     map[string]idempotency.Record
	released []string
}

func (f *fakeIdem) Get(_ context.Context, key string) (idempotency.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[key]
	if !ok {
		return idempotency.Record{}, idempotency.ErrNotFound
	}
	return r, nil
}

func (f *fakeIdem) ForceRelease(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, key)
	delete(f.recs, key)
	return nil
}

// logs collects what the page logs.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// serve mounts page under /ops/ as a user would.
func serve(t *testing.T, page *ops.Page) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", page))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post posts form as a browser on the same origin would; the client does
// not follow redirects, so the test sees where the action leads.
func post(t *testing.T, u string, form url.Values, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	var nilOutbox *fakeOutbox
	cases := []struct {
		opt  ops.Option
		want string
	}{
		{nil, "ops: New: option 0 is nil"},
		{ops.WithOutbox(nil), "ops: New: WithOutbox: store is nil"},
		{ops.WithOutbox(nilOutbox), "ops: New: WithOutbox: store is nil"},
		{ops.WithIdempotency(nil), "ops: New: WithIdempotency: store is nil"},
		{ops.WithActions(nil), "ops: New: WithActions: who is nil"},
		{ops.WithLogger(nil), "ops: New: WithLogger: logger is nil"},
	}
	for _, c := range cases {
		if _, err := ops.New(c.opt); err == nil || err.Error() != c.want {
			t.Errorf("New: %v, want %q", err, c.want)
		}
	}
	p, err := ops.New()
	if err != nil {
		t.Fatal(err)
	}
	if p.Observe(nil) != nil {
		t.Error("Observe(nil) is not nil")
	}
}

// TestReadOnlyByDefault: without WithActions the page offers no action and
// refuses every POST, touching nothing.
func TestReadOnlyByDefault(t *testing.T) {
	t.Parallel()
	ob := newFakeOutbox()
	page, err := ops.New(ops.WithOutbox(ob), ops.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	code, html := get(t, srv.URL+"/ops/dead")
	if code != http.StatusOK || !strings.Contains(html, "dead-1") {
		t.Fatalf("dead letters: %d\n%s", code, html)
	}
	if strings.Contains(html, "Requeue") || strings.Contains(html, "<button type=\"submit\" formaction") {
		t.Fatal("a read-only page offers actions")
	}
	for _, action := range []string{"requeue", "discard", "resume", "release"} {
		resp := post(t, srv.URL+"/ops/"+action, url.Values{"id": {"dead-1"}, "confirm": {"yes"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s: %d, want 403", action, resp.StatusCode)
		}
	}
	if r, d := ob.touched(); len(r)+len(d) != 0 {
		t.Fatalf("a read-only page changed the store: %v %v", r, d)
	}
}

// TestActionsGuarded: a cross-origin POST is refused by
// CrossOriginProtection; a request whose operator is unknown is refused.
func TestActionsGuarded(t *testing.T) {
	t.Parallel()
	ob := newFakeOutbox()
	page, err := ops.New(ops.WithOutbox(ob), ops.WithLogger(slog.New(slog.DiscardHandler)),
		ops.WithActions(func(r *http.Request) string { return r.Header.Get("X-Operator") }))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	form := url.Values{"id": {"dead-1"}}
	if resp := post(t, srv.URL+"/ops/requeue", form, "Sec-Fetch-Site", "cross-site", "X-Operator", "ann"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
	}
	if resp := post(t, srv.URL+"/ops/requeue", form, "Sec-Fetch-Site", "", "Origin", "https://evil.example", "X-Operator", "ann"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from another origin: %d, want 403", resp.StatusCode)
	}
	if resp := post(t, srv.URL+"/ops/requeue", form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST by nobody: %d, want 403", resp.StatusCode)
	}
	if r, _ := ob.touched(); len(r) != 0 {
		t.Fatalf("refused requests requeued %v", r)
	}
	if resp := post(t, srv.URL+"/ops/requeue", form, "X-Operator", "ann"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin POST by ann: %d, want 303", resp.StatusCode)
	}
}

// TestRequeueAndDiscard: requeue acts at once and is logged with who did
// it; discard asks first, and acts only when confirmed.
func TestRequeueAndDiscard(t *testing.T) {
	t.Parallel()
	ob := newFakeOutbox()
	var lg logs
	page, err := ops.New(ops.WithOutbox(ob), ops.WithLogger(slog.New(slog.NewTextHandler(&lg, nil))),
		ops.WithActions(func(*http.Request) string { return "ann@example.com" }))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	_, html := get(t, srv.URL+"/ops/dead")
	if !strings.Contains(html, "Requeue selected") || !strings.Contains(html, "Discard selected") {
		t.Fatal("the page offers no actions")
	}

	resp := post(t, srv.URL+"/ops/requeue", url.Values{"id": {"dead-0", "dead-2"}, "back": {"dead"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "dead?done=requeued&n=2" {
		t.Fatalf("requeue: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if r, _ := ob.touched(); strings.Join(r, ",") != "dead-0,dead-2" {
		t.Fatalf("requeued %v", r)
	}
	if !strings.Contains(lg.String(), "ops: requeued dead letters") || !strings.Contains(lg.String(), "who=ann@example.com") {
		t.Fatalf("the requeue was not logged with who did it:\n%s", lg.String())
	}
	if _, html := get(t, srv.URL+"/ops/dead?done=requeued&n=2"); !strings.Contains(html, "Requeued 2 dead letters") {
		t.Fatal("no word of the requeue after it")
	}

	resp = post(t, srv.URL+"/ops/discard", url.Values{"id": {"dead-1"}, "back": {"message"}})
	html = body(resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(html, "Discard 1 dead letter?") || !strings.Contains(html, `name="confirm" value="yes"`) {
		t.Fatalf("discard did not ask first: %d\n%s", resp.StatusCode, html)
	}
	if _, d := ob.touched(); len(d) != 0 {
		t.Fatalf("discarded before confirmation: %v", d)
	}
	resp = post(t, srv.URL+"/ops/discard", url.Values{"id": {"dead-1"}, "back": {"message"}, "confirm": {"yes"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "dead?") {
		t.Fatalf("confirmed discard: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, d := ob.touched(); strings.Join(d, ",") != "dead-1" {
		t.Fatalf("discarded %v", d)
	}
	if !strings.Contains(lg.String(), "ops: discarded dead letters") {
		t.Fatalf("the discard was not logged:\n%s", lg.String())
	}
	if resp := post(t, srv.URL+"/ops/requeue", url.Values{}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("requeue of nothing: %d", resp.StatusCode)
	}
	many := url.Values{}
	for i := range 101 {
		many.Add("id", fmt.Sprint(i))
	}
	if resp := post(t, srv.URL+"/ops/requeue", many); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("requeue of 101 messages: %d, want 400", resp.StatusCode)
	}
}

// TestNoSecretShown: headers that may hold secrets and credentials in URLs
// never reach the page.
func TestNoSecretShown(t *testing.T) {
	t.Parallel()
	page, err := ops.New(ops.WithOutbox(newFakeOutbox()), ops.WithActions(func(*http.Request) string { return "ann" }))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	for _, u := range []string{"/ops/", "/ops/dead", "/ops/message?id=dead-1"} {
		code, html := get(t, srv.URL+u)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", u, code)
		}
		for _, secret := range []string{"sk_live_SECRET", "KEYSECRET", "PASSWORD", "alice:"} {
			if strings.Contains(html, secret) {
				t.Errorf("%s shows %q", u, secret)
			}
		}
	}
	_, html := get(t, srv.URL+"/ops/message?id=dead-1")
	if !strings.Contains(html, "application/json") || !strings.Contains(html, "&#34;amount&#34;: 42") {
		t.Fatalf("the message page lacks its harmless header or its pretty payload:\n%s", html)
	}
	if code, _ := get(t, srv.URL+"/ops/message?id=nope"); code != http.StatusNotFound {
		t.Fatalf("unknown message: %d, want 404", code)
	}
}

// TestIdempotencyLookupAndRelease: a record is found by scope, method,
// route and key; its stored status shows; a stuck claim is released after
// confirmation, and the release is logged.
func TestIdempotencyLookupAndRelease(t *testing.T) {
	t.Parallel()
	// The stored form comes from the real middleware, so that a change of
	// idempotency's format breaks this test, not the page in production.
	mem, err := idempotency.NewMemoryStore()
	if err != nil {
		t.Fatal(err)
	}
	mw, err := idempotency.Middleware(mem, idempotency.WithScope(func(*http.Request) string { return "tenant-7" }))
	if err != nil {
		t.Fatal(err)
	}
	api := http.NewServeMux()
	api.Handle("POST /payments", mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"pay_1"}`)
	})))
	req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", "done-key")
	api.ServeHTTP(httptest.NewRecorder(), req)
	done, err := mem.Get(t.Context(), idempotency.ScopedKey("tenant-7", "POST", "POST /payments", "done-key"))
	if err != nil {
		t.Fatal(err)
	}
	stuck := idempotency.ScopedKey("tenant-7", "POST", "POST /payments", "stuck-key")
	store := &fakeIdem{recs: map[string]idempotency.Record{
		done.Key: done,
		stuck:    {Key: stuck, Status: idempotency.StatusInProgress, Fingerprint: "fp", TTL: 0},
	}}
	var lg logs
	page, err := ops.New(ops.WithIdempotency(store), ops.WithLogger(slog.New(slog.NewTextHandler(&lg, nil))),
		ops.WithActions(func(*http.Request) string { return "bob" }))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	q := url.Values{"scope": {"tenant-7"}, "method": {"POST"}, "route": {"POST /payments"}, "key": {"done-key"}}
	_, html := get(t, srv.URL+"/ops/idempotency?"+q.Encode())
	if !strings.Contains(html, "HTTP 201") || !strings.Contains(html, "completed") || strings.Contains(html, "Release the claim") {
		t.Fatalf("completed record:\n%s", html)
	}
	q.Set("key", "stuck-key")
	_, html = get(t, srv.URL+"/ops/idempotency?"+q.Encode())
	if !strings.Contains(html, "in progress") || !strings.Contains(html, "ran out") || !strings.Contains(html, "Release the claim") {
		t.Fatalf("stuck record:\n%s", html)
	}
	form := url.Values{"stored": {stuck}, "back": {"idempotency"}, "scope": {"tenant-7"}, "method": {"POST"}, "route": {"POST /payments"}, "key": {"stuck-key"}}
	resp := post(t, srv.URL+"/ops/release", form)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body(resp), "Release this claim?") || len(store.released) != 0 {
		t.Fatalf("release did not ask first: %d", resp.StatusCode)
	}
	form.Set("confirm", "yes")
	resp = post(t, srv.URL+"/ops/release", form)
	if resp.StatusCode != http.StatusSeeOther || len(store.released) != 1 || store.released[0] != stuck {
		t.Fatalf("release: %d, released %v", resp.StatusCode, store.released)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Path != "idempotency" || loc.Query().Get("key") != "stuck-key" || loc.Query().Get("done") != "released" {
		t.Fatalf("after release, back to %q", loc)
	}
	_, html = get(t, srv.URL+"/ops/"+loc.String())
	if !strings.Contains(html, "Released the claim") || !strings.Contains(html, "No record for") {
		t.Fatalf("after release:\n%s", html)
	}
	if !strings.Contains(lg.String(), "ops: released an idempotency claim") || !strings.Contains(lg.String(), "who=bob") {
		t.Fatalf("the release was not logged with who did it:\n%s", lg.String())
	}
}

type flaky struct{ n int }

func (f *flaky) Publish(ctx context.Context, _ outbox.Delivery) error {
	f.n++
	if f.n%4 == 0 {
		return errors.New("endpoint down")
	}
	return nil
}

// TestChartCountsThisReplica: the publisher Observe wraps feeds the chart.
func TestChartCountsThisReplica(t *testing.T) {
	t.Parallel()
	page, err := ops.New()
	if err != nil {
		t.Fatal(err)
	}
	pub := page.Observe(&flaky{})
	for range 8 {
		_ = pub.Publish(t.Context(), outbox.Delivery{})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = page.Observe(publisherFunc(func(ctx context.Context, _ outbox.Delivery) error { return ctx.Err() })).Publish(ctx, outbox.Delivery{})
	srv := serve(t, page)
	_, html := get(t, srv.URL+"/ops/")
	if !strings.Contains(html, "6 delivered, 2 failed") {
		t.Fatalf("chart:\n%s", html)
	}
	if !strings.Contains(html, `class="src here"`) {
		t.Fatal("the chart is not labelled as this replica's")
	}
}

type publisherFunc func(ctx context.Context, d outbox.Delivery) error

func (f publisherFunc) Publish(ctx context.Context, d outbox.Delivery) error { return f(ctx, d) }

// TestMountedAnywhere: links are relative, so the page works under any
// prefix; asked without its trailing slash it redirects to it.
func TestMountedAnywhere(t *testing.T) {
	t.Parallel()
	page, err := ops.New(ops.WithOutbox(newFakeOutbox()))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/steadfast/", http.StripPrefix("/admin/steadfast", page))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(srv.URL + "/admin/steadfast")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently && resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("without the slash: %d", resp.StatusCode)
	}
	loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if loc.Path != "/admin/steadfast/" {
		t.Fatalf("redirected to %s", loc)
	}
	code, html := get(t, srv.URL+"/admin/steadfast/")
	if code != http.StatusOK || strings.Contains(html, `href="/`) || strings.Contains(html, `action="/`) {
		t.Fatalf("overview: %d, or an absolute link:\n%s", code, html)
	}
	if code, css := get(t, srv.URL+"/admin/steadfast/style.css"); code != http.StatusOK || !strings.Contains(css, "max-width: 720px") {
		t.Fatalf("style.css: %d", code)
	}
	if code, _ := get(t, srv.URL+"/admin/steadfast/nope"); code != http.StatusNotFound {
		t.Fatalf("unknown page: %d", code)
	}
}

// TestMountedWithoutSlash: a page mounted by hand for "/ops" (no ServeMux
// redirect) sends "/ops" to "/ops/".
func TestMountedWithoutSlash(t *testing.T) {
	t.Parallel()
	page, err := ops.New()
	if err != nil {
		t.Fatal(err)
	}
	h := http.StripPrefix("/ops", page)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ops", nil))
	base, _ := url.Parse("http://x/ops")
	loc, _ := base.Parse(rec.Header().Get("Location"))
	if rec.Code != http.StatusMovedPermanently || loc.Path != "/ops/" {
		t.Fatalf("%d to %s", rec.Code, loc)
	}
}

// TestBreakersOfThisReplica: transitions reported through the breaker's
// state hook show as this replica's breaker table, open circuits first.
func TestBreakersOfThisReplica(t *testing.T) {
	t.Parallel()
	page, err := ops.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	if _, html := get(t, srv.URL+"/ops/"); !strings.Contains(html, "No breaker changed state") {
		t.Fatal("an empty breaker table says nothing")
	}
	g, err := breaker.NewGroup(breaker.WithConsecutiveFailures(2), breaker.WithStateHook(page.ObserveBreaker))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"api.down.example", "api.fine.example"} {
		b, err := g.Get(host)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, _ = breaker.Execute(t.Context(), b, func(context.Context) (int, error) {
				if host == "api.fine.example" {
					return 0, nil
				}
				return 0, errors.New("down")
			})
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, html := get(t, srv.URL+"/ops/")
		i := strings.Index(html, `id="breakers"`)
		if i >= 0 && strings.Contains(html[i:], "api.down.example") && strings.Contains(html[i:], `breaker-open">open`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the open breaker is not shown:\n%s", html)
		}
		time.Sleep(10 * time.Millisecond)
	}
	page.ObserveBreaker(breaker.Transition{Name: "shared.example", From: breaker.Closed, To: breaker.Open, Shared: true})
	_, html := get(t, srv.URL+"/ops/")
	if !strings.Contains(html, "shared.example") || !strings.Contains(html, ">shared<") {
		t.Fatal("a circuit held open by the shared state is not marked shared")
	}
	for i := range 600 {
		page.ObserveBreaker(breaker.Transition{Name: fmt.Sprintf("tenant-%d", i), To: breaker.Closed})
	}
	_, html = get(t, srv.URL+"/ops/")
	if !strings.Contains(html, "api.down.example") || strings.Count(html, `data-label="Breaker"`) != 500 {
		t.Fatalf("the table holds %d breakers (want 500, the open ones kept)", strings.Count(html, `data-label="Breaker"`))
	}
}

// TestRateLimitsOfThisReplica: a real limiter's keys show with their rate,
// a key the provider paused (429 with Retry-After) first.
func TestRateLimitsOfThisReplica(t *testing.T) {
	t.Parallel()
	lim, err := ratelimit.New(ratelimit.WithLimit(100, time.Minute, 10))
	if err != nil {
		t.Fatal(err)
	}
	page, err := ops.New(ops.WithRateLimiter("stripe", lim))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	if _, html := get(t, srv.URL+"/ops/"); !strings.Contains(html, "No key was limited") {
		t.Fatal("an empty rate-limit table says nothing")
	}
	for _, key := range []string{"api.stripe.com", "files.stripe.com"} {
		if err := lim.Allow(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"30"}}}
	lim.Observe(t.Context(), "files.stripe.com", resp, time.Now())
	_, html := get(t, srv.URL+"/ops/")
	i := strings.Index(html, `id="ratelimits"`)
	if i < 0 {
		t.Fatal("no rate-limit section")
	}
	html = html[i:]
	paused, other := strings.Index(html, "files.stripe.com"), strings.Index(html, "api.stripe.com")
	if paused < 0 || other < 0 || paused > other || !strings.Contains(html, "warn\">paused ") || !strings.Contains(html, "1.67/s") {
		t.Fatalf("rate limits:\n%s", html[:min(len(html), 3000)])
	}
	if _, err := ops.New(ops.WithRateLimiter("", lim)); err == nil {
		t.Fatal("a limiter without a name is accepted")
	}
	if _, err := ops.New(ops.WithRateLimiter("x", nil)); err == nil {
		t.Fatal("a nil limiter is accepted")
	}
}

// TestPausedDestinations: the pauses every relay honours are listed with
// their reason and time left; resuming one is a POST, logged, and the
// overview then says so.
func TestPausedDestinations(t *testing.T) {
	t.Parallel()
	ob := newFakeOutbox()
	ob.paused = []outbox.PausedDestination{{Destination: "tenant-9", Reason: "410 Gone from https://bob:HUNTER2@hooks.example.com", Until: time.Now().Add(time.Hour)}}
	var lg logs
	page, err := ops.New(ops.WithOutbox(ob), ops.WithLogger(slog.New(slog.NewTextHandler(&lg, nil))),
		ops.WithActions(func(*http.Request) string { return "carol" }))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	_, html := get(t, srv.URL+"/ops/")
	i := strings.Index(html, `id="pauses"`)
	if i < 0 || !strings.Contains(html[i:], "tenant-9") || !strings.Contains(html[i:], "410 Gone") || !strings.Contains(html[i:], "59 min") || strings.Contains(html, "HUNTER2") {
		t.Fatalf("pauses:\n%s", html)
	}
	resp := post(t, srv.URL+"/ops/resume", url.Values{"destination": {"tenant-9"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./?done=resumed&n=1" {
		t.Fatalf("resume: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, html = get(t, srv.URL+"/ops/?done=resumed&n=1")
	if !strings.Contains(html, "Resumed the destination") || !strings.Contains(html, "No destination is paused") {
		t.Fatalf("after resume:\n%s", html)
	}
	if !strings.Contains(lg.String(), "ops: resumed a destination") || !strings.Contains(lg.String(), "who=carol") {
		t.Fatalf("the resume was not logged with who did it:\n%s", lg.String())
	}
	if resp := post(t, srv.URL+"/ops/resume", url.Values{"destination": {"tenant-9"}}); resp.Header.Get("Location") != "./?done=resumed&n=0" {
		t.Fatalf("resume of a destination not paused: %q", resp.Header.Get("Location"))
	}
}

// brokenOutbox fails every read, the way a database that went away does.
type brokenOutbox struct{ fakeOutbox }

var errDown = errors.New("dial tcp 10.0.0.5:5432: connect: connection refused (postgres://app:S3CRET@db/app)")

func (*brokenOutbox) Stats(context.Context) (outbox.Stats, error) { return outbox.Stats{}, errDown }
func (*brokenOutbox) Pauses(context.Context) ([]outbox.PausedDestination, error) {
	return nil, errDown
}
func (*brokenOutbox) ListDead(context.Context, string, int64, int) ([]outbox.Record, error) {
	return nil, errDown
}
func (*brokenOutbox) Get(context.Context, string) (outbox.Record, error) {
	return outbox.Record{}, errDown
}

// TestStoreDown: a store that fails leaves the page up, each section
// saying what failed (without the credentials of a DSN), and the figures of
// this replica still shown.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	page, err := ops.New(ops.WithOutbox(&brokenOutbox{}), ops.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	code, html := get(t, srv.URL+"/ops/")
	if code != http.StatusOK || !strings.Contains(html, "Could not read the backlog: dial tcp") ||
		!strings.Contains(html, "Could not read the pauses") || !strings.Contains(html, `id="deliveries"`) || strings.Contains(html, "S3CRET") {
		t.Fatalf("overview with the store down: %d\n%s", code, html)
	}
	if code, html := get(t, srv.URL+"/ops/dead"); code != http.StatusOK || !strings.Contains(html, "Could not list the dead letters") {
		t.Fatalf("dead letters with the store down: %d", code)
	}
	if code, _ := get(t, srv.URL+"/ops/message?id=x"); code != http.StatusBadGateway {
		t.Fatalf("a message with the store down: %d, want 502", code)
	}
}

type cursors []catchup.Cursor

func (c cursors) Cursors(context.Context) ([]catchup.Cursor, error) { return c, nil }

// TestCatchupCursors: the catch-up sources show with their lag, lease
// holder and failing events, from the database.
func TestCatchupCursors(t *testing.T) {
	t.Parallel()
	page, err := ops.New(ops.WithCatchup(cursors{
		{Source: "stripe", Cursor: "evt_123", Owner: "web-2/41/ab", LeaseLeft: 9 * time.Second, SinceAdvance: 3 * time.Second, Lag: 95 * time.Second, Failing: 1, DeadLetters: 2},
		{Source: "github", SinceAdvance: time.Hour},
	}))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	_, html := get(t, srv.URL+"/ops/")
	i := strings.Index(html, `id="catchup"`)
	if i < 0 {
		t.Fatal("no catch-up section")
	}
	html = html[i:]
	for _, want := range []string{"stripe", "1 min 35 s", "web-2/41/ab", "evt_123", "github", "no replica", `class="src db"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the catch-up section lacks %q", want)
		}
	}
	if _, err := ops.New(ops.WithCatchup(nil)); err == nil {
		t.Fatal("a nil catch-up store is accepted")
	}
}

// TestDeadLettersByDestination: the destination filter pages through the
// store's dead letters, so the second page of a destination is reachable.
func TestDeadLettersByDestination(t *testing.T) {
	t.Parallel()
	ob := &fakeOutbox{}
	for i := range 300 {
		dest := "other"
		if i%5 == 0 {
			dest = "tenant-3"
		}
		ob.recs = append(ob.recs, outbox.Record{Message: outbox.Message{ID: fmt.Sprintf("m%03d", i), Topic: "orders", Destination: dest},
			Position: int64(i + 1), State: outbox.StateDead})
	}
	page, err := ops.New(ops.WithOutbox(ob))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	_, html := get(t, srv.URL+"/ops/dead?destination=tenant-3")
	if n := strings.Count(html, `href="message?id=`); n != 50 || strings.Contains(html, "m001") {
		t.Fatalf("first page: %d dead letters, or one of another destination", n)
	}
	i := strings.Index(html, "after=")
	if i < 0 {
		t.Fatal("no next page")
	}
	after := html[i+len("after=") : i+len("after=")+strings.IndexByte(html[i+len("after="):], '"')]
	_, html = get(t, srv.URL+"/ops/dead?destination=tenant-3&after="+after)
	if n := strings.Count(html, `href="message?id=`); n != 10 || !strings.Contains(html, "m295") {
		t.Fatalf("second page: %d dead letters", n)
	}
}
