package httpx

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// ParseRetryAfter parses the value of an HTTP Retry-After header (RFC 9110,
// section 10.2.3) received at now: either delta-seconds (one or more digits;
// very large values saturate) or an HTTP-date in any of the three formats
// http.ParseTime accepts (IMF-fixdate, RFC 850, ANSI C asctime), which gives
// the time left until that date, or 0 for a date already past. Surrounding
// spaces and tabs are ignored. It reports false for anything else, such as a
// negative number, a fraction, an empty value or garbage, and then the caller
// should fall back to its own backoff.
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	v := strings.Trim(value, " \t")
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		const maxSeconds = int64(math.MaxInt64 / int64(time.Second))
		var secs int64
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return parseHTTPDate(v, now)
			}
			if secs <= maxSeconds {
				secs = secs*10 + int64(c-'0')
			}
		}
		if secs > maxSeconds {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	return parseHTTPDate(v, now)
}

func parseHTTPDate(v string, now time.Time) (time.Duration, bool) {
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}
