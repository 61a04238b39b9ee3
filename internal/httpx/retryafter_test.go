package httpx_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 8, 49, 37, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"0", 0, true},
		{"2", 2 * time.Second, true},
		{" 120\t", 2 * time.Minute, true},
		{"007", 7 * time.Second, true},
		{"99999999999999999999999", time.Duration(1<<63 - 1), true},
		{"Sun, 29 Nov 2026 08:49:40 GMT", 3 * time.Second, true},  // IMF-fixdate
		{"Sunday, 29-Nov-26 08:49:40 GMT", 3 * time.Second, true}, // RFC 850
		{"Sun Nov 29 08:49:40 2026", 3 * time.Second, true},       // asctime
		{"Sun Nov 29 08:00:00 2026", 0, true},                     // past
		{"Sun, 29 Nov 2026 08:49:37 GMT", 0, true},                // now
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"soon", 0, false},
		{"2 s", 0, false},
		{"Sun, 29 Nov 2026 08:49:40", 0, false}, // no zone
		{"2026-11-29T08:49:40Z", 0, false},      // not an HTTP-date
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			got, ok := httpx.ParseRetryAfter(tt.value, now)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 29, 8, 49, 37, 0, time.UTC)
	for _, s := range []string{"0", "2", "-1", "1.5", "soon", "", " 3 ", "99999999999999999999",
		now.Add(time.Hour).Format(http.TimeFormat), now.Format(time.ANSIC),
		now.Format("Monday, 02-Jan-06 15:04:05 GMT")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := httpx.ParseRetryAfter(s, now)
		if !ok {
			if d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, false: want 0 when not ok", s, d)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v: negative", s, d)
		}
		// A delta-seconds value round-trips.
		if n, err := strconv.ParseUint(s, 10, 32); err == nil {
			if d != time.Duration(n)*time.Second {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %ds", s, d, n)
			}
		}
		// An HTTP-date gives the time left until it.
		if tm, err := http.ParseTime(s); err == nil {
			want := max(tm.Sub(now), 0)
			if d != want {
				t.Fatalf("ParseRetryAfter(%q) = %v, want %v", s, d, want)
			}
		}
	})
}
