package catchup

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTrail(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	ev := func(n int, created time.Time) Event {
		return Event{ID: "e" + strconv.Itoa(n), Cursor: "c" + strconv.Itoa(n), Created: created}
	}
	tests := []struct {
		name   string
		count  int
		window time.Duration
		evs    []Event
		want   string
	}{
		{"nothing read", 3, 0, nil, "start"},
		{"count, fewer than the window", 3, 0, []Event{ev(1, base), ev(2, base)}, "start"},
		{"count, window full", 3, 0, []Event{ev(1, base), ev(2, base), ev(3, base)}, "start"},
		{"count, beyond", 3, 0, []Event{ev(1, base), ev(2, base), ev(3, base), ev(4, base), ev(5, base)}, "c2"},
		{"no overlap", -1, 0, []Event{ev(1, base), ev(2, base)}, "c2"},
		{"time, all within", 0, time.Minute, []Event{ev(1, base), ev(2, base.Add(time.Second))}, "start"},
		{"time, some before the edge", 0, 10 * time.Second,
			[]Event{ev(1, base), ev(2, base.Add(5*time.Second)), ev(3, base.Add(20*time.Second)), ev(4, base.Add(30*time.Second))}, "c3"},
		{"time, an older event after a newer one stops the trail", 0, 10 * time.Second,
			[]Event{ev(1, base), ev(2, base.Add(35*time.Second)), ev(3, base.Add(5*time.Second)), ev(4, base.Add(40*time.Second))}, "c1"},
		{"time, edge inclusive", 0, 10 * time.Second, []Event{ev(1, base), ev(2, base.Add(10*time.Second))}, "c1"},
		{"time, unknown times take the one before", 0, 10 * time.Second,
			[]Event{ev(1, base), ev(2, time.Time{}), ev(3, base.Add(30*time.Second))}, "c2"},
		{"empty cursors stay put", -1, 0, []Event{ev(1, base), {ID: "x"}}, "c1"},
	}
	for _, tt := range tests {
		tr := newTrail("start", tt.count, tt.window)
		for _, e := range tt.evs {
			tr.add(e)
		}
		if got := tr.cursor(); got != tt.want {
			t.Errorf("%s: cursor %q, want %q", tt.name, got, tt.want)
		}
		c := tr.clone()
		c.add(ev(99, base.Add(time.Hour)))
		if got := tr.cursor(); got != tt.want {
			t.Errorf("%s: a clone's add changed the original: %q", tt.name, got)
		}
	}
	// Memory stays bounded by the window.
	tr := newTrail("", 10, 0)
	for i := range 10000 {
		tr.add(ev(i, base))
	}
	if len(tr.marks) > 11 {
		t.Errorf("%d marks kept for a window of 10", len(tr.marks))
	}
}

func TestNextLink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{`<https://a/x?page=2>; rel="next"`}, "https://a/x?page=2"},
		{[]string{`<https://a/1>; rel="prev", <https://a/3>; rel="next"`}, "https://a/3"},
		{[]string{`<https://a/1>; rel=prev`, `<https://a/3>; rel=next; title="n, ext"`}, "https://a/3"},
		{[]string{`<https://a/3>; title="a;b"; rel="last next"`}, "https://a/3"},
		{[]string{`<https://a/3>; REL="Next"`}, "https://a/3"},
		{[]string{`<https://a/3>; rel="nextish"`}, ""},
		{[]string{`https://a/3; rel="next"`}, ""},
		{[]string{`<https://a/3`}, ""},
		{[]string{`<https://a/3>; rel="next`}, ""},
		{[]string{`<https://a/3>; foo; rel=next`}, "https://a/3"},
	}
	for _, tt := range tests {
		if got := nextLink(tt.in); got != tt.want {
			t.Errorf("nextLink(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`<https://a/3>; rel="next"`, `<a>; rel=prev, <b>; rel=next`, `<a>;;;`, `<`, `<a>; t="`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = nextLink([]string{s})
	})
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Time
	}{
		{`1700000000`, time.Unix(1700000000, 0)},
		{`1700000000.5`, time.Unix(1700000000, 5e8)},
		{`1700000000123`, time.Unix(1700000000, 123e6)},
		{`"2024-01-02T03:04:05Z"`, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{`"yesterday"`, time.Time{}},
		{`-5`, time.Time{}},
		{`1e300`, time.Time{}},
		{`null`, time.Time{}},
		{``, time.Time{}},
	}
	for _, tt := range tests {
		got := parseTime([]byte(tt.in))
		if d := got.Sub(tt.want); d > time.Millisecond || d < -time.Millisecond || got.IsZero() != tt.want.IsZero() {
			t.Errorf("parseTime(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestJSONID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{`{"id":"evt_1"}`, "evt_1", true},
		{`{"id":42}`, "42", true},
		{`{"id":""}`, "", false},
		{`{"id":null}`, "", false},
		{`{"id":{"a":1}}`, "", false},
		{`{}`, "", false},
		{`[1]`, "", false},
		{`nope`, "", false},
	}
	for _, tt := range tests {
		got, err := jsonID([]byte(tt.in))
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("jsonID(%s) = %q, %v", tt.in, got, err)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`{"id":"e","type":"t","created":1}`, `{"id":1}`, `[]`, `{"created":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b, jsonID)
		if err == nil && ev.ID == "" {
			t.Fatal("an event without an id was accepted")
		}
	})
}

// FuzzStorable: whatever a provider sends, what the poller hands a store
// fits its columns (an id of at most 1,024 printable bytes, a type of at
// most 255, a payload of at most 1 MiB, a cursor of UTF-8 without NUL of
// at most 8 KiB), an event checkEvent accepts is kept as it is, and a
// reason is UTF-8 without NUL of at most 4 KiB.
func FuzzStorable(f *testing.F) {
	f.Add("evt_1", "charge.succeeded", "evt_1", []byte(`{}`), "boom")
	f.Add("", "", "", []byte(nil), "")
	f.Add("e\x00", "a\nb", "c\xff", []byte("x"), "bad \x00 \xff")
	f.Add(strings.Repeat("é", 600), strings.Repeat("t", 300), strings.Repeat("c", 9000), []byte("{}"), strings.Repeat("é", 3000))
	f.Fuzz(func(t *testing.T, id, typ, cursor string, payload []byte, why string) {
		ev := Event{ID: id, Type: typ, Cursor: cursor, Payload: payload}
		kept := storable(ev)
		if len(kept.ID) == 0 || len(kept.ID) > maxIDLen || !printable(kept.ID) || len(kept.Type) > maxTypeLen || !printable(kept.Type) ||
			len(kept.Payload) > maxEventSize || !storableCursor(kept.Cursor) {
			t.Fatalf("storable(%+v) = %+v", ev, kept)
		}
		if checkEvent(&ev) == nil && id != "" && (kept.ID != id || kept.Type != typ || string(kept.Payload) != string(payload)) {
			t.Fatalf("an accepted event was changed: %+v -> %+v", ev, kept)
		}
		r := reason(errors.New(why))
		if len(r) > maxReasonLen || !utf8.ValidString(r) || strings.ContainsRune(r, 0) || (len(why) <= maxReasonLen && utf8.ValidString(why) && !strings.ContainsRune(why, 0) && r != why) {
			t.Fatalf("reason(%q) = %q", why, r)
		}
	})
}
