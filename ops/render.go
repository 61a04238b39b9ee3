package ops

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/outbox"
)

var funcs = template.FuncMap{
	"dur":   human,
	"ago":   ago,
	"utc":   utc,
	"num":   num,
	"trunc": trunc,
	"clean": redactURLs,
	"dest":  destinationOf,
	"size":  size,
	"rate":  rate,
	"dead":  func(s outbox.State) bool { return s == outbox.StateDead },
	"inprogress": func(s idempotency.Status) bool {
		return s == idempotency.StatusInProgress
	},
}

// human writes a duration the way an operator reads it: 45 s, 3 min 20 s,
// 2 h 5 min, 3 d 4 h.
func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Second:
		if d == 0 {
			return "0 s"
		}
		return "< 1 s"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d/time.Second))
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 || m >= 10 {
			return fmt.Sprintf("%d min", m)
		}
		return fmt.Sprintf("%d min %d s", m, s)
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if h == 0 {
		return fmt.Sprintf("%d d", days)
	}
	return fmt.Sprintf("%d d %d h", days, h)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + human(d)
	}
	return human(d) + " ago"
}

func utc(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// num writes n with thin groups: 12 345 678.
func num(n any) string {
	var s string
	switch v := n.(type) {
	case int:
		s = strconv.Itoa(v)
	case int64:
		s = strconv.FormatInt(v, 10)
	case uint64:
		s = strconv.FormatUint(v, 10)
	default:
		return fmt.Sprint(n)
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func size(n int) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// userinfo matches the credentials of a URL (scheme://user:pass@host).
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@`)

// redactURLs hides the credentials of any URL in s.
func redactURLs(s string) string { return userinfo.ReplaceAllString(s, "${1}[hidden]@") }

// secretName matches header names whose values may be secret.
var secretName = regexp.MustCompile(`(?i)(authorization|cookie|secret|token|passw|signature|api[-_]?key|credential|session|private)`)

func headerRows(h map[string]string) []headerRow {
	rows := make([]headerRow, 0, len(h))
	for k, v := range h {
		row := headerRow{Name: k, Value: redactURLs(v)}
		if secretName.MatchString(k) {
			row.Value, row.Hidden = "hidden: it may be a secret", true
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return strings.ToLower(rows[i].Name) < strings.ToLower(rows[j].Name) })
	return rows
}

// payload is a message's payload as the page shows it.
type payload struct {
	Text   string
	Kind   string // "JSON", "text" or "binary (hex)"
	Size   int
	Capped bool
}

func showPayload(b []byte) payload {
	p := payload{Size: len(b)}
	if len(b) <= maxPayloadShow && json.Valid(b) {
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err == nil {
			p.Text, p.Kind = out.String(), "JSON"
			return p
		}
	}
	shown := b
	if len(shown) > maxPayloadShow {
		shown, p.Capped = shown[:maxPayloadShow], true
	}
	if utf8.Valid(shown) || (p.Capped && utf8.Valid(shown[:len(shown)-utf8.UTFMax+1])) {
		p.Text, p.Kind = strings.ToValidUTF8(string(shown), "�"), "text"
		return p
	}
	const hexShown = 4 << 10
	if len(shown) > hexShown {
		shown, p.Capped = shown[:hexShown], true
	}
	p.Text, p.Kind = hex.Dump(shown), "binary (hex)"
	return p
}

// storedResponse is what the page says of an idempotency record's stored
// result.
type storedResponse struct {
	HTTP     bool // stored by the HTTP middleware
	Status   int
	TooLarge bool
	Size     int
}

// decodeStored reads the status of a response stored by the idempotency
// middleware (its stored form starts with a kind byte, 'r' a response or
// 't' a marker of one too large to keep, then the status as a uvarint). A
// result stored by idempotency.Do is reported by its size only.
func decodeStored(b []byte) storedResponse {
	s := storedResponse{Size: len(b)}
	if len(b) < 2 || (b[0] != 'r' && b[0] != 't') {
		return s
	}
	st, n := binary.Uvarint(b[1:])
	if n <= 0 || st < 100 || st > 599 {
		return s
	}
	s.HTTP, s.Status, s.TooLarge = true, int(st), b[0] == 't'
	return s
}

// chart is the inline SVG of this replica's deliveries.
type chart struct {
	Bars              []bar
	Delivered, Failed uint64
	Max               uint64
	Window, Slot      time.Duration
}

func newChart(bars []bar) chart {
	c := chart{Bars: bars, Window: ringSlot * ringSlots, Slot: ringSlot}
	for _, b := range bars {
		c.Delivered += b.Delivered
		c.Failed += b.Failed
		c.Max = max(c.Max, b.Delivered+b.Failed)
	}
	return c
}

// SVG draws the bars: delivered in green below, failed in red above, the
// newest on the right. It stretches to the width of the page, so it holds
// no text (the labels are HTML around it). Everything in it is numbers and
// times this package formats, never text from a store.
func (c chart) SVG() template.HTML {
	const w, h = 600, 120
	scale := float64(c.Max)
	if scale == 0 {
		scale = 1
	}
	bw := float64(w) / float64(len(c.Bars))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="Deliveries of this replica over the last %s: %d delivered, %d failed" preserveAspectRatio="none">`,
		w, h+1, human(c.Window), c.Delivered, c.Failed)
	for i, bar := range c.Bars {
		x := float64(i)*bw + 1
		dh := h * float64(bar.Delivered) / scale
		fh := h * float64(bar.Failed) / scale
		y := h - dh
		fmt.Fprintf(&b, `<g><title>%s UTC: %d delivered, %d failed</title>`, bar.Start.UTC().Format("15:04:05"), bar.Delivered, bar.Failed)
		fmt.Fprintf(&b, `<rect class="slot" x="%.1f" y="0" width="%.1f" height="%d"/>`, x, bw-2, h)
		if bar.Delivered > 0 {
			fmt.Fprintf(&b, `<rect class="ok" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x, y, bw-2, dh)
		}
		if bar.Failed > 0 {
			fmt.Fprintf(&b, `<rect class="bad" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x, y-fh, bw-2, fh)
		}
		b.WriteString(`</g>`)
	}
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" class="axis" vector-effect="non-scaling-stroke"/>`, h, w, h)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
