package ops

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/outbox"
)

//go:embed assets
var assets embed.FS

// Bounds of what the page reads and accepts.
const (
	storeTimeout   = 10 * time.Second
	deadPageSize   = 50
	maxSelection   = 100
	maxFormBytes   = 64 << 10
	maxField       = 1024
	maxBacklogRows = 200
	maxPayloadShow = 64 << 10
	refreshSeconds = 15
)

// Page is the operator's page: an http.Handler to mount behind the
// application's own authentication, under a prefix of its choosing:
//
//	mux.Handle("/ops/", http.StripPrefix("/ops", page))
//
// It shows, each figure labelled with where it comes from, what the
// database holds (the same on every replica: the outbox's backlog per
// topic and destination, dead letters, one message, an idempotency
// record) and what this process saw (its deliveries and failures over the
// last 15 minutes, counted by the publisher that Observe wraps). Actions
// are off unless WithActions enables them. The page is rendered on the
// server (html/template), uses no script, and loads nothing from
// elsewhere. It never shows a header that may hold a secret
// (Authorization, cookies, tokens, signatures, keys) nor credentials in a
// URL. A Page is safe for concurrent use.
type Page struct {
	cfg      config
	log      *slog.Logger
	ring     ring
	breakers breakerBoard
	replica  string
	pages    map[string]*template.Template
	css      []byte
	mux      *http.ServeMux
}

// New returns a page showing the stores its options name. It returns an
// error naming the option at fault for an invalid option.
func New(opts ...Option) (*Page, error) {
	cfg := config{logger: slog.Default()}
	if err := applyOptions(&cfg, opts); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	p := &Page{cfg: cfg, log: cfg.logger, replica: host + " (pid " + strconv.Itoa(os.Getpid()) + ")", pages: map[string]*template.Template{}}
	var err error
	if p.css, err = assets.ReadFile("assets/style.css"); err != nil {
		return nil, fmt.Errorf("ops: New: %w", err)
	}
	for _, name := range []string{"overview", "dead", "message", "idempotency", "confirm", "problem"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "assets/layout.html", "assets/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ops: New: template %s: %w", name, err)
		}
		p.pages[name] = t
	}
	p.routes()
	return p, nil
}

// Observe returns pub wrapped so that the page's chart counts its
// publishes: delivered when Publish returns nil, failed otherwise (a
// publish cut off because the relay is stopping is not counted). Give the
// wrapped publisher to outbox.NewRelay. The counts are this process's
// only, kept in a fixed ring of 60 slots of 15 seconds. It returns nil for
// a nil pub.
func (p *Page) Observe(pub outbox.Publisher) outbox.Publisher {
	if isNil(pub) {
		return nil
	}
	return observed{next: pub, ring: &p.ring}
}

// ServeHTTP serves the page.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.URL.Path == "" {
		// Mounted under "/ops" and asked for "/ops": relative links need
		// the trailing slash.
		w.Header().Set("Location", path.Base(pathOf(r.RequestURI))+"/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	p.mux.ServeHTTP(w, r)
}

func pathOf(requestURI string) string {
	u, err := url.ParseRequestURI(requestURI)
	if err != nil {
		return "ops"
	}
	return u.Path
}

func (p *Page) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", p.overview)
	m.HandleFunc("GET /dead", p.deadLetters)
	m.HandleFunc("GET /message", p.message)
	m.HandleFunc("GET /idempotency", p.idempotency)
	m.HandleFunc("GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(p.css)
	})
	actions := http.NewServeMux()
	actions.HandleFunc("POST /requeue", p.requeue)
	actions.HandleFunc("POST /discard", p.discard)
	actions.HandleFunc("POST /resume", p.resume)
	actions.HandleFunc("POST /release", p.release)
	guarded := http.NewCrossOriginProtection().Handler(p.actionsAllowed(actions))
	for _, a := range []string{"/requeue", "/discard", "/resume", "/release"} {
		m.Handle("POST "+a, guarded)
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.problem(w, r, http.StatusNotFound, "No such page.")
	})
	p.mux = m
}

// view is what every page's layout shows.
type view struct {
	Title   string
	Nav     string
	Replica string
	Now     time.Time
	Actions bool
	Outbox  bool
	Idem    bool
	Flash   string
	Refresh int
	Data    any
}

func (p *Page) render(w http.ResponseWriter, r *http.Request, status int, name string, v view) {
	v.Replica, v.Now = p.replica, time.Now()
	v.Actions, v.Outbox, v.Idem = p.cfg.who != nil, p.cfg.outbox != nil, p.cfg.idempotency != nil
	if v.Flash == "" {
		v.Flash = flash(r.URL.Query())
	}
	var buf bytes.Buffer
	if err := p.pages[name].Execute(&buf, v); err != nil {
		p.log.Error("ops: render", "page", name, "error", err)
		http.Error(w, "ops: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *Page) problem(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p.render(w, r, status, "problem", view{Title: http.StatusText(status), Data: msg})
}

// flash is the message of an action just done, from a fixed list (the
// query never puts text of its own on the page).
func flash(q url.Values) string {
	n, _ := strconv.Atoi(q.Get("n"))
	switch q.Get("done") {
	case "requeued":
		return fmt.Sprintf("Requeued %d dead %s: %s pending again.", n, plural(n, "letter", "letters"), plural(n, "it is", "they are"))
	case "discarded":
		return fmt.Sprintf("Discarded %d dead %s.", n, plural(n, "letter", "letters"))
	case "resumed":
		if n == 0 {
			return "The destination was not paused any more."
		}
		return "Resumed the destination: its messages are deliverable now."
	case "released":
		return "Released the claim: the next request with this key runs the handler again."
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}

// errText is what the page says of a store's error.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return redactURLs(err.Error())
}

// --- overview

type overviewData struct {
	Backlog     []destRow
	Total       destRow
	BacklogMore int
	BacklogErr  string
	Pauses      []pauseRow
	PausesOK    bool
	PausesErr   string
	Chart       chart
	Breakers    []breakerRow
	Catchup     bool
	Cursors     []catchup.Cursor
	CursorsErr  string
	Limiters    bool
	Limits      []limitRow
	LimitsMore  int
}

func (p *Page) overview(w http.ResponseWriter, r *http.Request) {
	d := overviewData{Chart: newChart(p.ring.snapshot(time.Now())), Breakers: p.breakers.snapshot(), Limiters: len(p.cfg.limiters) > 0}
	d.Limits, d.LimitsMore = limits(r.Context(), p.cfg.limiters)
	if cs := p.cfg.catchup; cs != nil {
		d.Catchup = true
		ctx, cancel := storeCtx(r)
		cursors, err := cs.Cursors(ctx)
		cancel()
		if err != nil {
			d.CursorsErr = errText(err)
			p.log.Warn("ops: read the catch-up cursors", "error", err)
		}
		if len(cursors) > maxBacklogRows {
			cursors = cursors[:maxBacklogRows]
		}
		d.Cursors = cursors
	}
	if ob := p.cfg.outbox; ob != nil {
		ctx, cancel := storeCtx(r)
		rows, err := ob.backlog(ctx)
		if err != nil {
			d.BacklogErr = errText(err)
			p.log.Warn("ops: read the backlog", "error", err)
		}
		d.Total.Topic = "all"
		for _, row := range rows {
			d.Total.Pending += row.Pending
			d.Total.InFlight += row.InFlight
			d.Total.Dead += row.Dead
			d.Total.HasInFlight = d.Total.HasInFlight || row.HasInFlight
			d.Total.OldestPending = max(d.Total.OldestPending, row.OldestPending)
		}
		// The rows that need a look first: dead letters, then age.
		slices.SortStableFunc(rows, func(a, b destRow) int {
			switch {
			case a.Dead != b.Dead:
				return cmpDesc(a.Dead, b.Dead)
			case a.OldestPending != b.OldestPending:
				return cmpDesc(int64(a.OldestPending), int64(b.OldestPending))
			}
			return strings.Compare(a.Topic+"\x00"+a.Destination, b.Topic+"\x00"+b.Destination)
		})
		if len(rows) > maxBacklogRows {
			d.BacklogMore = len(rows) - maxBacklogRows
			rows = rows[:maxBacklogRows]
		}
		d.Backlog = rows
		d.Pauses, d.PausesOK, err = ob.pauses(ctx)
		if err != nil {
			d.PausesErr = errText(err)
			p.log.Warn("ops: read the pauses", "error", err)
		}
		for i := range d.Backlog {
			for _, pr := range d.Pauses {
				if pr.Destination == d.Backlog[i].Destination {
					d.Backlog[i].Paused = true
				}
			}
		}
		cancel()
	}
	p.render(w, r, http.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Refresh: refreshSeconds, Data: d})
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// --- dead letters

type deadData struct {
	Topic, Destination string
	Rows               []outbox.Record
	Err                string
	Next               int64 // position to list after for the next page; 0: none
	First              bool
}

func (p *Page) deadLetters(w http.ResponseWriter, r *http.Request) {
	if p.cfg.outbox == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no outbox (ops.WithOutbox).")
		return
	}
	q := r.URL.Query()
	d := deadData{Topic: q.Get("topic"), Destination: q.Get("destination")}
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if q.Get("after") != "" && (err != nil || after < 0) {
		p.problem(w, r, http.StatusBadRequest, "after must be a position (a whole number).")
		return
	}
	if len(d.Topic) > maxField || len(d.Destination) > maxField {
		p.problem(w, r, http.StatusBadRequest, "The filter is too long.")
		return
	}
	d.First = after == 0
	ctx, cancel := storeCtx(r)
	defer cancel()
	rows, err := p.cfg.outbox.dead(ctx, d.Topic, d.Destination, after, deadPageSize+1)
	if err != nil {
		d.Err = errText(err)
		p.log.Warn("ops: list dead letters", "error", err)
	}
	if len(rows) > deadPageSize {
		rows = rows[:deadPageSize]
		d.Next = rows[len(rows)-1].Position
	}
	d.Rows = rows
	p.render(w, r, http.StatusOK, "dead", view{Title: "Dead letters", Nav: "dead", Data: d})
}

// --- one message

type messageData struct {
	Rec     outbox.Record
	Headers []headerRow
	Payload payload
}

type headerRow struct {
	Name, Value string
	Hidden      bool
}

func (p *Page) message(w http.ResponseWriter, r *http.Request) {
	if p.cfg.outbox == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no outbox (ops.WithOutbox).")
		return
	}
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > maxField {
		p.problem(w, r, http.StatusBadRequest, "Give the id of a message.")
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	rec, err := p.cfg.outbox.get(ctx, id)
	if errors.Is(err, outbox.ErrNotFound) {
		p.problem(w, r, http.StatusNotFound, "No message has this id (delivered messages are removed after their retention).")
		return
	}
	if err != nil {
		p.log.Warn("ops: read a message", "error", err)
		p.problem(w, r, http.StatusBadGateway, "The outbox store failed: "+errText(err))
		return
	}
	d := messageData{Rec: rec, Headers: headerRows(rec.Headers), Payload: showPayload(rec.Payload)}
	p.render(w, r, http.StatusOK, "message", view{Title: "Message " + rec.ID, Nav: "dead", Data: d})
}

// --- idempotency

type idemData struct {
	Scope, Method, Route, Key, Stored string
	Looked                            bool
	StoredKey                         string
	Found                             bool
	Rec                               idempotency.Record
	Response                          storedResponse
	Err                               string
}

func (p *Page) idempotency(w http.ResponseWriter, r *http.Request) {
	if p.cfg.idempotency == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no idempotency store (ops.WithIdempotency).")
		return
	}
	q := r.URL.Query()
	d := idemData{Scope: q.Get("scope"), Method: q.Get("method"), Route: q.Get("route"), Key: q.Get("key"), Stored: q.Get("stored")}
	if d.Method == "" {
		d.Method = http.MethodPost
	}
	for _, f := range []string{d.Scope, d.Method, d.Route, d.Key, d.Stored} {
		if len(f) > maxField {
			p.problem(w, r, http.StatusBadRequest, "A field is longer than 1024 bytes.")
			return
		}
	}
	switch {
	case d.Stored != "":
		d.StoredKey = d.Stored
	case d.Key != "":
		d.StoredKey = idempotency.ScopedKey(d.Scope, d.Method, d.Route, d.Key)
	}
	if d.StoredKey != "" {
		d.Looked = true
		ctx, cancel := storeCtx(r)
		defer cancel()
		rec, err := p.cfg.idempotency.Get(ctx, d.StoredKey)
		switch {
		case errors.Is(err, idempotency.ErrNotFound):
		case err != nil:
			d.Err = errText(err)
			p.log.Warn("ops: look an idempotency record up", "error", err)
		default:
			d.Found, d.Rec, d.Response = true, rec, decodeStored(rec.Response)
		}
	}
	p.render(w, r, http.StatusOK, "idempotency", view{Title: "Idempotency", Nav: "idempotency", Data: d})
}

// --- actions

// actionsAllowed refuses every action when actions are off, and those of
// a request whose operator who cannot name.
func (p *Page) actionsAllowed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.cfg.who == nil {
			p.problem(w, r, http.StatusForbidden, "Actions are off on this page (ops.WithActions enables them).")
			return
		}
		if p.cfg.who(r) == "" {
			p.problem(w, r, http.StatusForbidden, "Who you are is unknown, so no action is allowed.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			p.problem(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ids returns the form's message ids, checked.
func ids(r *http.Request) ([]string, error) {
	list := r.PostForm["id"]
	if len(list) == 0 {
		return nil, errors.New("Select at least one message.")
	}
	if len(list) > maxSelection {
		return nil, fmt.Errorf("Select at most %d messages at once.", maxSelection)
	}
	for _, id := range list {
		if id == "" || len(id) > maxField {
			return nil, errors.New("A message id is empty or too long.")
		}
	}
	return list, nil
}

// back returns where to go after an action: the page it was asked from
// (one of the page's own), with the outcome.
func back(r *http.Request, done string, n int) string {
	q := url.Values{}
	if done != "" {
		q.Set("done", done)
		q.Set("n", strconv.Itoa(n))
	}
	switch r.PostForm.Get("back") {
	case "message":
		if id := r.PostForm.Get("id"); len(r.PostForm["id"]) == 1 {
			q.Set("id", id)
			return "message?" + q.Encode()
		}
	case "overview":
		return "./?" + q.Encode()
	case "idempotency":
		fields := []string{"scope", "method", "route", "key"}
		if r.PostForm.Get("key") == "" {
			fields = []string{"stored"}
		}
		for _, f := range fields {
			if v := r.PostForm.Get(f); v != "" {
				q.Set(f, v)
			}
		}
		return "idempotency?" + q.Encode()
	}
	for _, f := range []string{"topic", "destination"} {
		if v := r.PostForm.Get(f); v != "" {
			q.Set(f, v)
		}
	}
	return "dead?" + q.Encode()
}

// seeOther answers a POST with a redirect to a page of the page's own. The
// location stays relative (http.Redirect would resolve it against the path
// StripPrefix left, losing the prefix the page is mounted under).
func seeOther(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}

func (p *Page) requeue(w http.ResponseWriter, r *http.Request) {
	if p.cfg.outbox == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no outbox.")
		return
	}
	list, err := ids(r)
	if err != nil {
		p.problem(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	n, err := p.cfg.outbox.requeue(ctx, list)
	if err != nil {
		p.log.Warn("ops: requeue failed", "who", p.cfg.who(r), "ids", list, "error", err)
		p.problem(w, r, http.StatusBadGateway, "Requeue failed: "+errText(err))
		return
	}
	p.log.Info("ops: requeued dead letters", "who", p.cfg.who(r), "ids", list, "requeued", n)
	seeOther(w, back(r, "requeued", n))
}

type confirmData struct {
	Action, Question, Consequence, Button string
	Fields                                [][2]string
	Cancel                                string
}

// confirmed reports whether the form carries the confirmation; if not, it
// renders the question with the same fields.
func (p *Page) confirmed(w http.ResponseWriter, r *http.Request, d confirmData) bool {
	if r.PostForm.Get("confirm") == "yes" {
		return true
	}
	for _, k := range []string{"id", "key", "stored", "scope", "method", "route", "topic", "destination", "back"} {
		for _, v := range r.PostForm[k] {
			d.Fields = append(d.Fields, [2]string{k, v})
		}
	}
	d.Cancel = back(r, "", 0)
	p.render(w, r, http.StatusOK, "confirm", view{Title: "Confirm", Data: d})
	return false
}

func (p *Page) discard(w http.ResponseWriter, r *http.Request) {
	if p.cfg.outbox == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no outbox.")
		return
	}
	list, err := ids(r)
	if err != nil {
		p.problem(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if !p.confirmed(w, r, confirmData{
		Action:      "discard",
		Question:    fmt.Sprintf("Discard %d dead %s?", len(list), plural(len(list), "letter", "letters")),
		Consequence: "They are deleted for good and will never be delivered.",
		Button:      "Discard for good",
	}) {
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	n, err := p.cfg.outbox.discard(ctx, list)
	if err != nil {
		p.log.Warn("ops: discard failed", "who", p.cfg.who(r), "ids", list, "error", err)
		p.problem(w, r, http.StatusBadGateway, "Discard failed: "+errText(err))
		return
	}
	p.log.Info("ops: discarded dead letters", "who", p.cfg.who(r), "ids", list, "discarded", n)
	if r.PostForm.Get("back") == "message" {
		r.PostForm.Set("back", "dead")
	}
	seeOther(w, back(r, "discarded", n))
}

func (p *Page) resume(w http.ResponseWriter, r *http.Request) {
	if p.cfg.outbox == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no outbox.")
		return
	}
	dest := r.PostForm.Get("destination")
	if dest == "" || len(dest) > maxField {
		p.problem(w, r, http.StatusBadRequest, "Give the destination to resume.")
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	n, err := p.cfg.outbox.resume(ctx, dest)
	if err != nil {
		p.log.Warn("ops: resume failed", "who", p.cfg.who(r), "destination", dest, "error", err)
		p.problem(w, r, http.StatusBadGateway, "Resume failed: "+errText(err))
		return
	}
	p.log.Info("ops: resumed a destination", "who", p.cfg.who(r), "destination", dest, "was_paused", n > 0)
	r.PostForm.Set("back", "overview")
	seeOther(w, back(r, "resumed", n))
}

func (p *Page) release(w http.ResponseWriter, r *http.Request) {
	if p.cfg.idempotency == nil {
		p.problem(w, r, http.StatusNotFound, "This page shows no idempotency store.")
		return
	}
	key := r.PostForm.Get("stored")
	if key == "" || len(key) > 4*maxField {
		p.problem(w, r, http.StatusBadRequest, "Give the stored key to release.")
		return
	}
	if !p.confirmed(w, r, confirmData{
		Action:      "release",
		Question:    "Release this claim?",
		Consequence: "If its handler is still running, it may run twice: the next request with this key runs the handler again, and the first holder's result is refused.",
		Button:      "Release the claim",
	}) {
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	err := p.cfg.idempotency.ForceRelease(ctx, key)
	if err != nil && !errors.Is(err, idempotency.ErrNotFound) {
		p.log.Warn("ops: release failed", "who", p.cfg.who(r), "key", key, "error", err)
		p.problem(w, r, http.StatusBadGateway, "Release failed: "+errText(err))
		return
	}
	p.log.Info("ops: released an idempotency claim", "who", p.cfg.who(r), "key", key, "found", err == nil)
	r.PostForm.Set("back", "idempotency")
	seeOther(w, back(r, "released", 1))
}
