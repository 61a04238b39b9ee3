package catchup_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/retry"
)

// list is a provider's events list in one of the shapes HTTPSource reads.
type list struct {
	n           int
	shape       string // "cursor", "next", "link", "array+link"
	newestFirst bool
	requests    int
}

func (l *list) event(i int) map[string]any {
	return map[string]any{"id": fmt.Sprintf("evt_%04d", i), "type": "t" + strconv.Itoa(i%3), "created": 1_700_000_000 + i, "data": map[string]any{"n": i}}
}

// order returns the event numbers in list order.
func (l *list) order() []int {
	o := make([]int, l.n)
	for i := range o {
		o[i] = i
		if l.newestFirst {
			o[i] = l.n - 1 - i
		}
	}
	return o
}

func (l *list) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.requests++
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	order := l.order()
	start := 0
	if a := q.Get("starting_after"); a != "" {
		n, _ := strconv.Atoi(strings.TrimPrefix(a, "evt_"))
		start = slices.Index(order, n) + 1
	}
	if p := q.Get("page"); p != "" {
		start, _ = strconv.Atoi(p)
	}
	end := min(start+limit, l.n)
	data := []map[string]any{}
	for _, i := range order[start:end] {
		data = append(data, l.event(i))
	}
	more := end < l.n
	next := ""
	if more {
		next = "/v1/events?limit=" + strconv.Itoa(limit) + "&page=" + strconv.Itoa(end)
	}
	var body any = map[string]any{"data": data, "has_more": more}
	switch l.shape {
	case "next":
		body = map[string]any{"items": data, "next": next}
		if next == "" {
			body = map[string]any{"items": data, "next": nil}
		}
	case "link", "array+link":
		if next != "" {
			w.Header().Add("Link", `<`+next+`>; rel="next", </v1/events>; rel="first"`)
		}
		if l.shape == "array+link" {
			body = data
		} else {
			body = map[string]any{"data": data}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func readAll(t *testing.T, src catchup.Source, cursor string) ([]catchup.Event, string) {
	t.Helper()
	var all []catchup.Event
	for range 1000 {
		page, err := src.List(context.Background(), cursor)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Events...)
		if !page.More {
			if n := len(page.Events); n > 0 {
				cursor = page.Events[n-1].Cursor
			}
			return all, cursor
		}
		cursor = page.Next
	}
	t.Fatal("the list never ended")
	return nil, ""
}

func TestHTTPSourceShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		shape string
		opts  []catchup.Option
	}{
		{"cursor", nil},
		{"next", []catchup.Option{catchup.WithNextField("next"), catchup.WithItemsField("items")}},
		{"link", []catchup.Option{catchup.WithLinkHeader()}},
		{"array+link", []catchup.Option{catchup.WithLinkHeader()}},
	}
	for _, tt := range tests {
		t.Run(tt.shape, func(t *testing.T) {
			t.Parallel()
			l := &list{n: 250, shape: tt.shape}
			srv := httptest.NewServer(l)
			defer srv.Close()
			src, err := catchup.NewHTTPSource(srv.Client(), srv.URL+"/v1/events", tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			evs, _ := readAll(t, src, "")
			if len(evs) != 250 {
				t.Fatalf("%d events read, want 250", len(evs))
			}
			for i, ev := range evs {
				want := l.event(i)
				var payload map[string]any
				if err := json.Unmarshal(ev.Payload, &payload); err != nil {
					t.Fatal(err)
				}
				if ev.ID != want["id"] || ev.Type != want["type"] || !ev.Created.Equal(time.Unix(int64(want["created"].(int)), 0)) || payload["id"] != want["id"] {
					t.Fatalf("event %d = %+v", i, ev)
				}
			}
			if l.requests != 3 {
				t.Errorf("%d requests for 250 events in pages of 100", l.requests)
			}
			// Resuming after an event lists what follows it (its page again
			// for sources whose cursors are pages).
			more, _ := readAll(t, src, evs[149].Cursor)
			if len(more) == 0 || more[len(more)-1].ID != "evt_0249" || more[0].ID > "evt_0150" {
				t.Errorf("resuming after event 149: %d events from %s", len(more), more[0].ID)
			}
		})
	}
}

func TestHTTPSourceNewestFirst(t *testing.T) {
	t.Parallel()
	for _, shape := range []string{"cursor", "link"} {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			l := &list{n: 250, shape: shape, newestFirst: true}
			srv := httptest.NewServer(l)
			defer srv.Close()
			opts := []catchup.Option{catchup.WithNewestFirst(3), catchup.WithPageSize("limit", 100)}
			if shape == "link" {
				opts = append(opts, catchup.WithLinkHeader())
			}
			src, err := catchup.NewHTTPSource(srv.Client(), srv.URL+"/v1/events", opts...)
			if err != nil {
				t.Fatal(err)
			}
			page, err := src.List(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Events) != 250 || page.Events[0].ID != "evt_0000" || page.Events[249].ID != "evt_0249" || page.More {
				t.Fatalf("from the start: %d events, %s..., more %v", len(page.Events), page.Events[0].ID, page.More)
			}
			l.requests = 0
			page, err = src.List(context.Background(), "evt_0230")
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, ev := range page.Events {
				ids = append(ids, ev.ID)
				if ev.Cursor != ev.ID {
					t.Errorf("cursor of %s is %q", ev.ID, ev.Cursor)
				}
			}
			if len(ids) != 19 || ids[0] != "evt_0231" || ids[18] != "evt_0249" || l.requests != 1 {
				t.Errorf("after evt_0230: %v in %d requests", ids, l.requests)
			}
			// Too far back for the bound: an error, never a partial page.
			small, err := catchup.NewHTTPSource(srv.Client(), srv.URL+"/v1/events", append(opts, catchup.WithNewestFirst(2))...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := small.List(context.Background(), "evt_0010"); !errors.Is(err, catchup.ErrWalkTooLong) || !retry.IsPermanent(err) {
				t.Errorf("walk beyond the bound: %v", err)
			}
			// A cursor the list no longer holds (fell off its retention):
			// everything listed is newer.
			page, err = src.List(context.Background(), "evt_gone")
			if err != nil || len(page.Events) != 250 {
				t.Errorf("cursor no longer listed: %d events, %v", len(page.Events), err)
			}
		})
	}
}

func TestHTTPSourceErrors(t *testing.T) {
	// Not parallel: it lowers the page bound (32 MiB) to 1 MiB for its
	// subtests, which run in parallel with each other.
	t.Cleanup(catchup.SetMaxPageBytes(1 << 20))
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		opts       []catchup.Option
		status     int
		retryAfter time.Duration
		permanent  bool
	}{
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		}, nil, 429, 7 * time.Second, false},
		{"503", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, nil, 503, 0, false},
		{"500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, nil, 500, 0, false},
		{"401", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }, nil, 401, 0, true},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>") }, nil, 0, 0, true},
		{"no data member", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"items":[]}`) }, nil, 0, 0, true},
		{"over 10,000 items", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"data":[`+strings.Repeat(`{"id":1},`, 10000)+`{"id":2}]}`)
		}, nil, 0, 0, true},
		{"one event over the page bound", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"data":[{"id":"a","pad":"`+strings.Repeat("x", 1<<20)+`"}]}`)
		}, nil, 0, 0, true},
		{"next on another host", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"data":[{"id":"a"}],"next":"http://169.254.169.254/latest"}`)
		}, []catchup.Option{catchup.WithNextField("next")}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			src, err := catchup.NewHTTPSource(srv.Client(), srv.URL, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.List(context.Background(), "")
			if err == nil {
				t.Fatal("no error")
			}
			var se *retry.StatusError
			if tt.status != 0 && (!errors.As(err, &se) || se.StatusCode != tt.status) {
				t.Errorf("error %v does not carry status %d", err, tt.status)
			}
			if d, ok := retry.RetryAfter(err); (tt.retryAfter != 0) != ok || d != tt.retryAfter {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, tt.retryAfter)
			}
			if retry.IsPermanent(err) != tt.permanent {
				t.Errorf("permanent = %v, want %v: %v", !tt.permanent, tt.permanent, err)
			}
			if !strings.HasPrefix(err.Error(), "catchup: ") {
				t.Errorf("error %q does not name the package", err)
			}
		})
	}
}

// TestHTTPSourcePassesBadItemsOn: an item that is not an event (no id,
// not an object, over 1 MiB) does not fail its page, which would stop the
// poller there for good: it is passed on, without a cursor when it has no
// id, for the poller to refuse; the next page starts after the last event
// with an id. (It used to fail the page as a permanent error.)
func TestHTTPSourcePassesBadItemsOn(t *testing.T) {
	t.Parallel()
	huge := `{"id":"h","pad":"` + strings.Repeat("x", 1<<20) + `"}`
	bodies := map[string]string{
		"":  `{"data":[{"id":"a"},{"type":"x"},42,` + huge + `,{"id":"b"},{"type":"y"}],"has_more":true}`,
		"b": `{"data":[{"type":"z"}],"has_more":true}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, bodies[r.URL.Query().Get("starting_after")])
	}))
	defer srv.Close()
	src, err := catchup.NewHTTPSource(srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	page, err := src.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range page.Events {
		got = append(got, fmt.Sprintf("%s/%s/%d", ev.ID, ev.Cursor, len(ev.Payload)))
	}
	want := []string{"a/a/10", "//12", "//2", fmt.Sprintf("h/h/%d", len(huge)), "b/b/10", "//12"}
	if !slices.Equal(got, want) || page.Next != "b" || !page.More {
		t.Errorf("page %v next %q more %v, want %v next b more true", got, page.Next, page.More, want)
	}
	// A page without any id gives nothing to page after: the list ends
	// there for this pass.
	if page, err = src.List(context.Background(), "b"); err != nil || len(page.Events) != 1 || page.More || page.Next != "" {
		t.Errorf("a page of events without ids: %+v, %v", page, err)
	}
}

func TestHTTPSourceHeaders(t *testing.T) {
	t.Parallel()
	var (
		got   http.Header
		query string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, query = r.Header.Clone(), r.URL.RawQuery
		fmt.Fprint(w, `{"data":[]}`)
	}))
	defer srv.Close()
	src, err := catchup.NewHTTPSource(srv.Client(), srv.URL+"?type=order.*", catchup.WithPageSize("per_page", 50))
	if err != nil {
		t.Fatal(err)
	}
	page, err := src.List(context.Background(), "")
	if err != nil || len(page.Events) != 0 || page.More {
		t.Fatalf("empty list: %+v, %v", page, err)
	}
	if got.Get("Accept") != "application/json" {
		t.Errorf("Accept %q", got.Get("Accept"))
	}
	if query != "per_page=50&type=order.%2A" {
		t.Errorf("query %q", query)
	}
}

// TestPageTooLargeAsksForSmallerPages: a page over the bound (32 MiB;
// 32 KiB here) is asked again
// with half the page size, down to one event, instead of stopping every
// pass; the events come in order and the cursor moves as usual.
func TestPageTooLargeAsksForSmallerPages(t *testing.T) {
	defer catchup.SetMaxPageBytes(32 << 10)() // 32 KiB instead of 32 MiB
	const events = 50
	pad := strconv.Quote(strings.Repeat("x", 900)) // 50 events: 45 KiB
	var limits []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		limits = append(limits, limit)
		start := 0
		if after := r.URL.Query().Get("starting_after"); after != "" {
			start, _ = strconv.Atoi(strings.TrimPrefix(after, "evt_"))
			start++
		}
		end := min(start+limit, events)
		fmt.Fprint(w, `{"data":[`)
		for i := start; i < end; i++ {
			if i > start {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, `{"id":"evt_%d","type":"t","pad":`, i)
			_, _ = io.WriteString(w, pad)
			fmt.Fprint(w, "}")
		}
		fmt.Fprintf(w, `],"has_more":%t}`, end < events)
	}))
	defer srv.Close()
	src, err := catchup.NewHTTPSource(srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	cursor := ""
	for range 10 {
		p, err := src.List(context.Background(), cursor)
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		for _, ev := range p.Events {
			got = append(got, ev.ID)
		}
		cursor = p.Next
		if !p.More {
			break
		}
	}
	if len(got) != events || got[0] != "evt_0" || got[events-1] != fmt.Sprintf("evt_%d", events-1) {
		t.Fatalf("read %d events (%v...), want %d in order", len(got), got[:min(len(got), 3)], events)
	}
	if limits[0] != 100 || limits[1] != 50 || limits[2] != 25 {
		t.Errorf("page sizes asked %v, want 100, 50, 25 and so on", limits)
	}
}
