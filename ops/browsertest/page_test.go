package browsertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/ops"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/retry"
)

// chromium returns the path of a Chromium (or Chrome) binary, or skips
// (fails under CI) saying how to get one.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.NeedServers(t, "no chromium on the PATH (apt-get install -y chromium)")
	return ""
}

// publisher delivers every topic but "invoices", which it refuses for good
// until fixed is set (the operator's fix, after which a requeue delivers),
// and every destination but "tenant-gone", which answers 410 Gone until
// back is set: the relay pauses it for an hour, for every relay.
type publisher struct {
	fixed     atomic.Bool
	back      atomic.Bool
	mu        sync.Mutex
	delivered map[string]bool
}

func (p *publisher) Publish(_ context.Context, d outbox.Delivery) error {
	if d.Topic == "invoices" && !p.fixed.Load() {
		return retry.Permanent(errors.New("POST https://hooks.example.com/invoices: 422 Unprocessable Entity: unknown field \"tax_rate\""))
	}
	if d.Destination == "tenant-gone" && !p.back.Load() {
		return outbox.Pause(errors.New("POST https://hooks.example.com/tenant-gone: 410 Gone"), time.Hour)
	}
	p.mu.Lock()
	p.delivered[d.ID] = true
	p.mu.Unlock()
	return nil
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.delivered)
}

func (p *publisher) wasDelivered(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delivered[id]
}

// syncBuffer is a log the page writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// world is a service with an outbox and an idempotency store on a real
// PostgreSQL, a relay, and the page mounted at /ops/.
type world struct {
	out   *sqloutbox.Store
	idem  *sqlstore.Store
	pub   *publisher
	log   *syncBuffer
	url   string
	dead  []string // ids of the dead letters
	stuck string   // stored key of a claim whose holder died
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dsn := testenv.PostgresURL(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(8)
	t.Cleanup(func() { db.Close() })
	var b [5]byte
	_, _ = rand.Read(b[:])
	prefix := "ops_" + hex.EncodeToString(b[:])
	w := &world{pub: &publisher{delivered: map[string]bool{}}, log: &syncBuffer{}}
	if w.out, err = sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(prefix+"_ob"), sqloutbox.WithoutNotify(), sqloutbox.WithKeepDelivered()); err != nil {
		t.Fatal(err)
	}
	if w.idem, err = sqlstore.New(db, steadfast.Postgres, sqlstore.WithTable(prefix+"_idem")); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := w.out.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.idem.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rows, err := db.Query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, prefix+"%")
		if err != nil {
			return
		}
		var tables []string
		for rows.Next() {
			var name string
			_ = rows.Scan(&name)
			tables = append(tables, name)
		}
		rows.Close()
		for _, name := range tables {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + name + " CASCADE")
		}
	})

	// A catch-up source (its cursor row, as an operator sets it), a rate
	// limiter with a key a provider paused, for the page to show.
	cu, err := sqlcatchup.New(db, steadfast.Postgres, sqlcatchup.WithTable(prefix+"_cu"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cu.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cu.SetCursor(ctx, "stripe-events", "evt_1NqA8x2eZvKYlo2C"); err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.New(ratelimit.WithLimit(100, time.Second, 10))
	if err != nil {
		t.Fatal(err)
	}
	_ = lim.Allow(ctx, "api.stripe.com")
	_ = lim.Allow(ctx, "api.github.com")
	lim.Observe(ctx, "api.github.com", &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"120"}}}, time.Now())

	page, err := ops.New(ops.WithOutbox(w.out), ops.WithIdempotency(w.idem), ops.WithCatchup(cu), ops.WithRateLimiter("providers", lim),
		ops.WithActions(func(r *http.Request) string { return r.Header.Get("X-Test-Operator") + "browser-test" }),
		ops.WithLogger(slog.New(slog.NewTextHandler(w.log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	// A breaker per endpoint host, reporting to the page; one trips.
	brk, err := breaker.NewGroup(breaker.WithConsecutiveFailures(3), breaker.WithStateHook(page.ObserveBreaker))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"hooks.example.com", "partner.example.net"} {
		b, err := brk.Get(host)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			_, _ = breaker.Execute(ctx, b, func(context.Context) (int, error) {
				if host == "partner.example.net" {
					return 0, errors.New("503")
				}
				return 0, nil
			})
		}
	}
	relay, err := outbox.NewRelay(w.out, page.Observe(w.pub), outbox.WithPollInterval(50*time.Millisecond), outbox.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}

	// Messages in every state: delivered, dead, pending (not before an
	// hour from now), for several topics and destinations.
	var msgs []outbox.Message
	for i := range 24 {
		msgs = append(msgs, outbox.Message{Topic: "orders", Destination: fmt.Sprintf("tenant-%d", i%3), Key: fmt.Sprintf("order-%d", i%5),
			Headers: map[string]string{"Content-Type": "application/json"}, Payload: []byte(fmt.Sprintf(`{"order":%d,"status":"paid"}`, i))})
	}
	for i := range 4 {
		msgs = append(msgs, outbox.Message{Topic: "invoices", Key: fmt.Sprintf("invoice-%d", i),
			Headers: map[string]string{"Content-Type": "application/json", "Authorization": "Bearer sk_live_do_not_show"},
			Payload: []byte(fmt.Sprintf(`{"invoice":"inv_%d","amount":{"value":4200,"currency":"EUR"},"tax_rate":0.2}`, i))})
	}
	for i := range 2 {
		msgs = append(msgs, outbox.Message{Topic: "orders", Destination: "tenant-gone", Key: fmt.Sprintf("gone-%d", i), Payload: []byte(fmt.Sprintf(`{"order":%d}`, 100+i))})
	}
	for i := range 3 {
		msgs = append(msgs, outbox.Message{Topic: "reminders", Payload: []byte(fmt.Sprintf(`{"reminder":%d}`, i)), NotBefore: time.Now().Add(time.Hour)})
	}
	if err := w.out.EnqueueWithoutTx(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = relay.Stop(sctx)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := w.out.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := w.out.Pauses(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Dead == 4 && st.Pending == 5 && len(ps) == 1 && w.pub.count() == 24 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not settle the messages: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dead, err := w.out.ListDead(ctx, "", 0, 10)
	if err != nil || len(dead) != 4 {
		t.Fatalf("dead letters: %d, %v", len(dead), err)
	}
	for _, r := range dead {
		w.dead = append(w.dead, r.ID)
	}

	// A claim whose holder died an hour before its lease ends, and a
	// completed record beside it.
	w.stuck = idempotency.ScopedKey("tenant-1", "POST", "POST /payments", "pay-123")
	if c, err := w.idem.Claim(ctx, w.stuck, "fp-stuck", time.Hour); err != nil || !c.Acquired {
		t.Fatalf("claim: %+v, %v", c, err)
	}
	done := idempotency.ScopedKey("tenant-1", "POST", "POST /payments", "pay-122")
	c, err := w.idem.Claim(ctx, done, "fp-done", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.idem.Complete(ctx, done, c.Token, []byte{'r', 201, 1, 0}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", page))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/ops/"
	return w
}

// browser starts a headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // Debian's chromium, as root in CI, needs it
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs actions with a bound, failing the test with what it was doing.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// screenshot saves the page, whole, as dir/name.png when TEST_SCREENSHOTS
// names a directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("TEST_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOperatorPage opens the page in Chromium against a real PostgreSQL
// with messages in every state, checks what it shows, requeues a dead
// letter by clicking and sees it delivered, resumes a paused destination
// and sees its messages delivered, and releases a stuck idempotency claim
// through its confirmation page.
func TestOperatorPage(t *testing.T) {
	w := newWorld(t)
	ctx := browser(t)

	step(t, ctx, "open the overview", chromedp.Navigate(w.url), chromedp.WaitVisible(chromedp.CSS("#backlog")))
	backlog := text(t, ctx, "#backlog .summary")
	if !strings.Contains(backlog, "5 pending") || !strings.Contains(backlog, "4 dead") {
		t.Fatalf("backlog summary: %q", backlog)
	}
	// One line per topic and destination, from sqloutbox's
	// StatsByDestination; the paused destination's line says so.
	if got := text(t, ctx, "#backlog tr.paused"); !strings.Contains(got, "orders") || !strings.Contains(got, "tenant-gone") || !strings.Contains(got, "paused") {
		t.Fatalf("backlog line of the paused destination: %q", got)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#backlog tbody tr").length`); n != 3 {
		t.Fatalf("backlog lines: %d, want 3 (invoices, orders/tenant-gone, reminders)", n)
	}
	if got := text(t, ctx, "#deliveries .summary"); !strings.Contains(got, "24 delivered") || !strings.Contains(got, "5 failed") {
		t.Fatalf("this replica's deliveries: %q", got)
	}
	if got := text(t, ctx, "#pauses"); !strings.Contains(got, "tenant-gone") || !strings.Contains(got, "410 Gone") || !strings.Contains(got, "59 min") {
		t.Fatalf("paused destinations: %q", got)
	}
	if got := text(t, ctx, "#catchup"); !strings.Contains(got, "stripe-events") || !strings.Contains(got, "no replica") {
		t.Fatalf("catch-up: %q", got)
	}
	if got := text(t, ctx, "#breakers"); !strings.Contains(got, "partner.example.net") || !strings.Contains(got, "open") {
		t.Fatalf("breakers: %q", got)
	}
	if got := text(t, ctx, "#ratelimits"); !strings.Contains(got, "api.github.com") || !strings.Contains(got, "paused") {
		t.Fatalf("rate limits: %q", got)
	}
	screenshot(t, ctx, "ops-desktop")

	// The dead letters of topic invoices; the secret header stays hidden.
	step(t, ctx, "open the dead letters", chromedp.Navigate(w.url+"dead?topic=invoices"), chromedp.WaitVisible(chromedp.CSS("#dead table")))
	if n := eval[int](t, ctx, `document.querySelectorAll('#dead tbody tr').length`); n != 4 {
		t.Fatalf("%d dead letters listed, want 4", n)
	}
	step(t, ctx, "open one dead letter", chromedp.Click(chromedp.CSS(`a[href="message?id=`+w.dead[0]+`"]`)), chromedp.WaitVisible(chromedp.CSS("#payload")))
	if html := eval[string](t, ctx, `document.body.innerHTML`); strings.Contains(html, "sk_live_do_not_show") || !strings.Contains(html, "tax_rate") {
		t.Fatal("the message page shows the Authorization header or lacks the payload")
	}
	if state := text(t, ctx, ".tag.state-dead"); state != "dead" {
		t.Fatalf("state %q", state)
	}

	// The operator fixes the endpoint, then requeues one dead letter from
	// the list by clicking: it is delivered.
	w.pub.fixed.Store(true)
	target := w.dead[1]
	step(t, ctx, "requeue by clicking",
		chromedp.Navigate(w.url+"dead?topic=invoices"), chromedp.WaitVisible(chromedp.CSS("#dead table")),
		chromedp.Click(chromedp.CSS(`input[type=checkbox][value="`+target+`"]`)),
		chromedp.Click(chromedp.CSS(`button[formaction="requeue"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if msg := text(t, ctx, ".flash"); !strings.Contains(msg, "Requeued 1 dead letter") {
		t.Fatalf("after requeue: %q", msg)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#dead tbody tr').length`); n != 3 {
		t.Fatalf("%d dead letters left listed, want 3", n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		step(t, ctx, "open the requeued message", chromedp.Navigate(w.url+"message?id="+target), chromedp.WaitVisible(chromedp.CSS("#message .tag")))
		if text(t, ctx, "#message .tag") == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the requeued message was not delivered: %s", text(t, ctx, "#message .tag"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !w.pub.wasDelivered(target) {
		t.Fatal("the page says delivered but the publisher never saw it")
	}

	// The endpoint is back: resume its destination by clicking; its two
	// held messages are delivered.
	w.pub.back.Store(true)
	step(t, ctx, "resume by clicking",
		chromedp.Navigate(w.url), chromedp.WaitVisible(chromedp.CSS("#pauses")),
		chromedp.Click(chromedp.CSS(`#pauses form[action="resume"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if msg := text(t, ctx, ".flash"); !strings.Contains(msg, "Resumed the destination") {
		t.Fatalf("after resume: %q", msg)
	}
	if got := text(t, ctx, "#pauses"); !strings.Contains(got, "No destination is paused") {
		t.Fatalf("paused destinations after resume: %q", got)
	}
	deadline = time.Now().Add(15 * time.Second)
	for w.pub.count() < 24+1+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the resumed destination's messages were not delivered: %d delivered", w.pub.count())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Release the stuck claim: look it up, ask, confirm.
	step(t, ctx, "look the claim up",
		chromedp.Navigate(w.url+"idempotency"), chromedp.WaitVisible(chromedp.CSS(`#lookup input[name=key]`)),
		chromedp.SetValue(chromedp.CSS(`#lookup input[name=scope]`), "tenant-1"),
		chromedp.SetValue(chromedp.CSS(`#lookup input[name=route]`), "POST /payments"),
		chromedp.SetValue(chromedp.CSS(`#lookup input[name=key]`), "pay-123"),
		chromedp.Click(chromedp.CSS(`#lookup form button`)),
		chromedp.WaitVisible(chromedp.CSS("#record")))
	if got := text(t, ctx, "#record"); !strings.Contains(got, "in progress") || !strings.Contains(got, "left") {
		t.Fatalf("the stuck claim: %q", got)
	}
	step(t, ctx, "ask to release", chromedp.Click(chromedp.CSS(`#record button.danger`)), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if _, err := w.idem.Get(t.Context(), w.stuck); err != nil {
		t.Fatalf("released before confirmation: %v", err)
	}
	step(t, ctx, "confirm", chromedp.Click(chromedp.CSS(`#confirm button.danger`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if msg := text(t, ctx, ".flash"); !strings.Contains(msg, "Released the claim") {
		t.Fatalf("after release: %q", msg)
	}
	if _, err := w.idem.Get(t.Context(), w.stuck); !errors.Is(err, idempotency.ErrNotFound) {
		t.Fatalf("the claim is still there: %v", err)
	}
	for _, want := range []string{"ops: requeued dead letters", "ops: resumed a destination", "ops: released an idempotency claim", "who=browser-test"} {
		if !strings.Contains(w.log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, w.log.String())
		}
	}
}

// TestPhoneWidth: at 375 px no page scrolls sideways.
func TestPhoneWidth(t *testing.T) {
	w := newWorld(t)
	ctx := browser(t)
	step(t, ctx, "phone viewport", chromedp.EmulateViewport(375, 812, chromedp.EmulateMobile, chromedp.EmulatePortrait))
	pages := []string{"", "dead", "dead?topic=invoices", "message?id=" + w.dead[0], "idempotency?scope=tenant-1&method=POST&route=POST+/payments&key=pay-123"}
	for _, p := range pages {
		step(t, ctx, "open "+p, chromedp.Navigate(w.url+p), chromedp.WaitVisible(chromedp.CSS("main")))
		width := eval[int](t, ctx, `document.documentElement.clientWidth`)
		scroll := eval[int](t, ctx, `Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)`)
		if width != 375 || scroll > width {
			t.Errorf("%q at %d px is %d px wide: it scrolls sideways", p, width, scroll)
		}
		// No element may stick out of the viewport either.
		wide := eval[string](t, ctx, `(() => { for (const el of document.querySelectorAll('body *')) { const r = el.getBoundingClientRect(); if (r.width > 0 && r.right > document.documentElement.clientWidth + 0.5) return el.tagName + '.' + el.className + ' ' + Math.round(r.right); } return ''; })()`)
		if wide != "" {
			t.Errorf("%q: %s sticks out at 375 px", p, wide)
		}
		switch p {
		case "":
			screenshot(t, ctx, "ops-phone")
		case "dead":
			screenshot(t, ctx, "ops-phone-dead")
		}
	}
}
