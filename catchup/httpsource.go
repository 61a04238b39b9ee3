package catchup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/steadfast-go/steadfast/internal/httpx"
	"github.com/steadfast-go/steadfast/retry"
)

// maxPageBytes bounds the body of one page (a variable for the tests).
var maxPageBytes = 32 << 20

// errPageTooLarge is matched by the error of a fetch whose body is over
// maxPageBytes.
var errPageTooLarge = errors.New("catchup: page too large")

// ErrWalkTooLong is matched by the error of HTTPSource.List, for a list that
// is newest first (WithNewestFirst), when the cursor's event was not met
// within the pages allowed.
var ErrWalkTooLong = errors.New("catchup: the cursor's event was not met within WithNewestFirst's pages")

// HTTPSource is a Source that reads a provider's events list over HTTP, as
// JSON, with the caller's *http.Client (so retry, breaker and ratelimit
// transports wrap it, and its transport adds the provider's credentials).
// It reads three common shapes of cursor-paged lists:
//
//   - "starting_after" (the default, Stripe's): GET url?limit=100 then
//     url?limit=100&starting_after=<id of the last event read>; the body is
//     {"data": [...events], "has_more": true}.
//   - a next URL in the body (WithNextField): {"data": [...], "next": url}.
//   - a Link header (WithLinkHeader): Link: <url>; rel="next".
//
// Each event is a JSON object whose top-level "id" (a string or a number),
// "type" and "created" (Unix seconds, or an RFC 3339 string) fill Event; the
// object itself is the Event's Payload. An item that is not such an object
// (no id, not an object, over 1 MiB) is passed on as it is, for the poller
// to refuse (DeadLetter.Refused), instead of failing its page. A list that
// is newest first (WithNewestFirst) is walked back to the cursor and
// returned oldest first.
//
// A 408, 429, 500, 502, 503 or 504 answer is returned as an error wrapping a
// *retry.StatusError that asks, through the retry protocol, for the delay of
// its Retry-After header; any other non-2xx answer, a body that is not such
// a list, a page over 10,000 items and a next page on another host, as a
// permanent error (the cursor stays; set it past such a page with
// sqlcatchup's Store.SetCursor if the provider keeps serving it). A page
// over 32 MiB is asked again with half as many events (when the source
// sends a page size: WithPageSize), down to one event; the pages after it
// grow back to the page size, doubling. A page of one event over 32 MiB
// (or over 32 MiB at every size, from a provider that ignores the size)
// is a permanent error.
//
// An HTTPSource is safe for concurrent use.
type HTTPSource struct {
	client *http.Client
	base   *url.URL
	cfg    config
	size   atomic.Int64 // the page size asked for now: cfg.pageSize, less after a page over 32 MiB
}

var _ Source = (*HTTPSource)(nil)

// NewHTTPSource returns a source that lists events at listURL (an absolute
// http or https URL, which may carry query parameters of its own) with
// client. It returns an error for a nil client, a bad URL and an option at
// fault.
func NewHTTPSource(client *http.Client, listURL string, opts ...Option) (*HTTPSource, error) {
	if client == nil {
		return nil, errors.New("catchup: NewHTTPSource: nil *http.Client (pass http.DefaultClient for the default)")
	}
	u, err := url.Parse(listURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("catchup: NewHTTPSource: %q is not an absolute http(s) URL", listURL)
	}
	cfg := defaults()
	if err := applyOptions(ctorSource, &cfg, opts); err != nil {
		return nil, err
	}
	s := &HTTPSource{client: client, base: u, cfg: cfg}
	s.size.Store(int64(cfg.pageSize))
	return s, nil
}

// List implements Source. The cursor is an event id for the "starting_after"
// shape and for a newest-first list, a page URL otherwise.
func (s *HTTPSource) List(ctx context.Context, cursor string) (Page, error) {
	if s == nil {
		return Page{}, errors.New("catchup: List: nil *HTTPSource")
	}
	if s.cfg.newestFirst > 0 {
		return s.walk(ctx, cursor)
	}
	p, err := s.fetchAt(ctx, cursor)
	if err != nil {
		return Page{}, err
	}
	page := Page{Events: p.events, More: p.more}
	if s.cfg.paging == pagingCursor {
		// An event without an id (the poller refuses it) has no cursor:
		// the next page starts after the last event with one.
		for i := range page.Events {
			page.Events[i].Cursor = page.Events[i].ID
			if page.Events[i].ID != "" {
				page.Next = page.Events[i].ID
			}
		}
		if page.Next == "" {
			page.More = false
		}
		return page, nil
	}
	// Cursors are pages: resuming after any event of this page reads the
	// page again.
	for i := range page.Events {
		page.Events[i].Cursor = cursor
	}
	page.Next = p.next
	return page, nil
}

// walk reads a newest-first list from its newest page back to the event
// cursor (an id) and returns what is newer than it, oldest first.
func (s *HTTPSource) walk(ctx context.Context, cursor string) (Page, error) {
	var (
		evs  []Event
		next string
	)
walk:
	for n := 0; ; n++ {
		if n == s.cfg.newestFirst {
			return Page{}, retry.Permanent(fmt.Errorf("%w: %d pages of %s read back from the newest without meeting event %q",
				ErrWalkTooLong, n, s.base.Redacted(), cursor))
		}
		p, err := s.fetchAt(ctx, next)
		if err != nil {
			return Page{}, err
		}
		met, last := false, ""
		for _, ev := range p.events {
			if cursor != "" && ev.ID == cursor {
				met = true
				break
			}
			ev.Cursor = ev.ID // none for an event without an id: the poller refuses it
			if ev.ID != "" {
				last = ev.ID
			}
			evs = append(evs, ev)
		}
		switch {
		case met || !p.more || len(p.events) == 0:
			break walk
		case s.cfg.paging != pagingCursor:
			next = p.next
		case last == "":
			break walk // a page of events without ids: nothing to page after
		default:
			next = last
		}
	}
	slices.Reverse(evs)
	return Page{Events: evs}, nil
}

// fetchAt fetches the page at cursor. A page over maxPageBytes is asked
// again with half the page size, down to one event, when the source sends a
// page size; after a page that fits, the size asked for next doubles, up to
// WithPageSize's.
func (s *HTTPSource) fetchAt(ctx context.Context, cursor string) (fetched, error) {
	size := int(s.size.Load())
	for {
		u, err := s.pageURL(cursor, size)
		if err != nil {
			return fetched{}, err
		}
		f, err := s.fetch(ctx, u)
		if errors.Is(err, errPageTooLarge) && s.cfg.sizeParam != "" && size > 1 {
			size /= 2
			s.size.Store(int64(size))
			continue
		}
		if err == nil && size < s.cfg.pageSize {
			s.size.Store(int64(min(2*size, s.cfg.pageSize)))
		}
		return f, err
	}
}

// pageURL returns the URL of the page at cursor, asking for size events. A
// next page's URL (WithNextField, WithLinkHeader) is the provider's own; its
// page size is replaced only when size is below WithPageSize's.
func (s *HTTPSource) pageURL(cursor string, size int) (*url.URL, error) {
	if cursor != "" && s.cfg.paging != pagingCursor {
		u, err := s.base.Parse(cursor)
		if err != nil {
			return nil, retry.Permanent(fmt.Errorf("catchup: cursor %q is not a URL: %w", cursor, err))
		}
		if u.Scheme != s.base.Scheme || u.Host != s.base.Host {
			return nil, retry.Permanent(fmt.Errorf("catchup: next page %s is not on %s://%s", u.Redacted(), s.base.Scheme, s.base.Host))
		}
		if s.cfg.sizeParam != "" && size < s.cfg.pageSize {
			q := u.Query()
			q.Set(s.cfg.sizeParam, strconv.Itoa(size))
			u.RawQuery = q.Encode()
		}
		return u, nil
	}
	u := *s.base
	q := u.Query()
	if s.cfg.sizeParam != "" {
		q.Set(s.cfg.sizeParam, strconv.Itoa(size))
	}
	if cursor != "" {
		q.Set(s.cfg.cursorParam, cursor)
	}
	u.RawQuery = q.Encode()
	return &u, nil
}

type fetched struct {
	events []Event
	more   bool
	next   string
}

func (s *HTTPSource) fetch(ctx context.Context, u *url.URL) (fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fetched{}, retry.Permanent(fmt.Errorf("catchup: %w", err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fetched{}, fmt.Errorf("catchup: listing events: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		serr := &retry.StatusError{StatusCode: resp.StatusCode}
		err := fmt.Errorf("catchup: listing events at %s: %w", u.Redacted(), serr)
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if d, ok := httpx.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return fetched{}, retry.After(err, d)
			}
			return fetched{}, err
		}
		return fetched{}, retry.Permanent(err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(maxPageBytes)+1))
	if err != nil {
		return fetched{}, fmt.Errorf("catchup: reading the page at %s: %w", u.Redacted(), err)
	}
	if len(body) > maxPageBytes {
		return fetched{}, retry.Permanent(fmt.Errorf("%w: the page at %s is larger than %d bytes", errPageTooLarge, u.Redacted(), maxPageBytes))
	}
	f, err := s.decode(body)
	if err != nil {
		return fetched{}, retry.Permanent(fmt.Errorf("catchup: the page at %s: %w", u.Redacted(), err))
	}
	if s.cfg.paging == pagingLink {
		f.next = nextLink(resp.Header.Values("Link"))
	}
	if f.next != "" {
		nu, err := u.Parse(f.next)
		if err != nil || nu.Scheme != s.base.Scheme || nu.Host != s.base.Host {
			return fetched{}, retry.Permanent(fmt.Errorf("catchup: the page at %s links to %q, which is not on %s://%s",
				u.Redacted(), f.next, s.base.Scheme, s.base.Host))
		}
		f.next = nu.String()
	}
	if s.cfg.paging != pagingCursor {
		f.more = f.next != ""
	}
	return f, nil
}

// decode reads a page body: the top level is streamed, each event is
// copied once and read once.
func (s *HTTPSource) decode(body []byte) (fetched, error) {
	var (
		items []json.RawMessage
		f     fetched
	)
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return fetched{}, fmt.Errorf("not JSON: %w", err)
	}
	switch tok {
	case json.Delim('['):
		if items, err = decodeItems(dec); err != nil {
			return fetched{}, fmt.Errorf("not a JSON array of events: %w", err)
		}
	case json.Delim('{'):
		found := false
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return fetched{}, fmt.Errorf("not a JSON object: %w", err)
			}
			key, _ := tok.(string)
			switch {
			case key == s.cfg.itemsField:
				found = true
				if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
					return fetched{}, fmt.Errorf("%q is not an array", s.cfg.itemsField)
				}
				if items, err = decodeItems(dec); err != nil {
					return fetched{}, fmt.Errorf("%q: %w", s.cfg.itemsField, err)
				}
			case key == "has_more" && s.cfg.paging == pagingCursor:
				if err := dec.Decode(&f.more); err != nil {
					return fetched{}, fmt.Errorf(`"has_more" is not a boolean: %w`, err)
				}
			case key == s.cfg.nextField && s.cfg.paging == pagingNext:
				var next *string
				if err := dec.Decode(&next); err != nil {
					return fetched{}, fmt.Errorf("%q is not a string: %w", s.cfg.nextField, err)
				}
				if next != nil {
					f.next = *next
				}
			default:
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return fetched{}, fmt.Errorf("not a JSON object: %w", err)
				}
			}
		}
		if _, err := dec.Token(); err != nil {
			return fetched{}, fmt.Errorf("not a JSON object: %w", err)
		}
		if !found {
			return fetched{}, fmt.Errorf("no %q member", s.cfg.itemsField)
		}
	default:
		return fetched{}, errors.New("not a JSON object or array")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fetched{}, errors.New("data after the JSON value")
	}
	// An item that is not an event object (or too large, or without an
	// id) is passed on as it is: the poller refuses it, as a dead letter,
	// instead of stopping at its page for good.
	f.events = make([]Event, 0, len(items))
	for _, it := range items {
		var v struct {
			ID      json.RawMessage `json:"id"`
			Type    json.RawMessage `json:"type"`
			Created json.RawMessage `json:"created"`
		}
		ev := Event{Payload: it}
		if json.Unmarshal(it, &v) == nil {
			ev.Created = parseTime(v.Created)
			ev.ID, _ = idString(v.ID)
			ev.Type, _ = jsonString(v.Type)
		}
		f.events = append(f.events, ev)
	}
	return f, nil
}

// decodeItems reads the elements of an array whose '[' was read, and its
// ']', at most 10,000 of them.
func decodeItems(dec *json.Decoder) ([]json.RawMessage, error) {
	var items []json.RawMessage
	for dec.More() {
		if len(items) == 10000 {
			return nil, errors.New("more than 10000 events in one page")
		}
		var it json.RawMessage
		if err := dec.Decode(&it); err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return items, nil
}

// nextLink returns the target of the first rel="next" link of Link header
// values (RFC 8288), or "".
func nextLink(values []string) string {
	for _, v := range values {
		for len(v) > 0 {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				return ""
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				return ""
			}
			target := v[1:end]
			v = v[end+1:]
			// Parameters up to the next link (a comma outside quotes).
			next := false
			for {
				v = strings.TrimLeft(v, " \t")
				if !strings.HasPrefix(v, ";") {
					break
				}
				v = strings.TrimLeft(v[1:], " \t")
				eq := strings.IndexAny(v, "=;,")
				if eq < 0 {
					v = ""
					break
				}
				name := strings.ToLower(strings.TrimSpace(v[:eq]))
				if v[eq] != '=' {
					v = v[eq:]
					continue
				}
				v = strings.TrimLeft(v[eq+1:], " \t")
				var val string
				if strings.HasPrefix(v, `"`) {
					q := strings.IndexByte(v[1:], '"')
					if q < 0 {
						return ""
					}
					val, v = v[1:1+q], v[2+q:]
				} else {
					e := strings.IndexAny(v, ";,")
					if e < 0 {
						e = len(v)
					}
					val, v = strings.TrimSpace(v[:e]), v[e:]
				}
				if name == "rel" {
					for _, r := range strings.Fields(strings.ToLower(val)) {
						if r == "next" {
							next = true
						}
					}
				}
			}
			if next {
				return target
			}
		}
	}
	return ""
}
