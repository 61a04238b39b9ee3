package ratelimit_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/steadfast-go/steadfast/ratelimit"
)

func TestParseAnnouncement(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	date := now.Add(-3 * time.Second) // the provider's clock is 3 s behind ours
	httpDate := date.Format(http.TimeFormat)
	unix := func(d time.Duration) string { return itoa(date.Add(d).Unix()) }
	lim := func(r int, p time.Duration) ratelimit.Limit { return ratelimit.Limit{Rate: r, Period: p} }
	s := time.Second
	for _, tc := range []struct {
		name   string
		status int
		header map[string][]string
		pause  time.Duration
		limit  ratelimit.Limit
		valid  time.Duration
	}{
		{name: "nothing", status: 200},
		// The current draft.
		{name: "draft budget", status: 200,
			header: map[string][]string{"Ratelimit": {`"default";r=50;t=30`}},
			limit:  lim(50, 30*s), valid: 30 * s},
		{name: "draft budget, token name", status: 200,
			header: map[string][]string{"Ratelimit": {`default;r=50;t=30`}},
			limit:  lim(50, 30*s), valid: 30 * s},
		{name: "draft spent", status: 200,
			header: map[string][]string{"Ratelimit": {`"default";r=0;t=7`}},
			pause:  7 * s},
		{name: "draft reset from the policy's window", status: 200,
			header: map[string][]string{"Ratelimit": {`"p";r=5`}, "Ratelimit-Policy": {`"p";q=100;w=10`}},
			limit:  lim(5, 10*s), valid: 10 * s},
		{name: "draft no reset and no policy", status: 200,
			header: map[string][]string{"Ratelimit": {`"p";r=5`}}},
		{name: "draft most restrictive of two", status: 200,
			header: map[string][]string{"Ratelimit": {`"burst";r=50;t=1, "day";r=100;t=3600`}},
			limit:  lim(100, 3600*s), valid: time.Minute},
		{name: "draft over two field lines", status: 200,
			header: map[string][]string{"Ratelimit": {`"burst";r=50;t=1`, `"hour";r=10;t=60`}},
			limit:  lim(10, 60*s), valid: 60 * s},
		{name: "draft quota units other than requests are ignored", status: 200,
			header: map[string][]string{
				"Ratelimit":        {`"bytes";r=1;t=60, "req";r=40;t=2`},
				"Ratelimit-Policy": {`"bytes";q=1000;qu="content-bytes";w=60, "req";q=100;qu="requests";w=2`},
			},
			limit: lim(40, 2*s), valid: 2 * s},
		{name: "draft policy alone", status: 200,
			header: map[string][]string{"Ratelimit-Policy": {`"a";q=100;w=60, "b";q=10;w=1`}},
			limit:  lim(100, 60*s), valid: 60 * s},
		{name: "draft malformed is ignored", status: 200,
			header: map[string][]string{"Ratelimit": {`"default";r=-1;t=30`}}},
		{name: "draft not a list is ignored", status: 200,
			header: map[string][]string{"Ratelimit": {`limit=10, remaining=5, reset=3`}}},
		{name: "draft reset beyond a year is ignored", status: 200,
			header: map[string][]string{"Ratelimit": {`"d";r=5;t=99999999`}}},
		// The older draft.
		{name: "older draft", status: 200,
			header: map[string][]string{"Ratelimit-Limit": {"100"}, "Ratelimit-Remaining": {"20"}, "Ratelimit-Reset": {"4"}},
			limit:  lim(20, 4*s), valid: 4 * s},
		{name: "older draft with a policy list in the limit", status: 200,
			header: map[string][]string{"Ratelimit-Limit": {"10, 10;w=1, 50;w=60"}, "Ratelimit-Remaining": {"9"}, "Ratelimit-Reset": {"1"}},
			limit:  lim(9, s), valid: s},
		{name: "older draft policy", status: 200,
			header: map[string][]string{"Ratelimit-Policy": {`10;w=1, 50;w=60`}},
			limit:  lim(50, 60*s), valid: 60 * s},
		{name: "older draft malformed", status: 200,
			header: map[string][]string{"Ratelimit-Remaining": {"20x"}, "Ratelimit-Reset": {"4"}}},
		// X-RateLimit-*.
		{name: "x delta-seconds", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {"15"}, "Date": {httpDate}},
			limit:  lim(30, 15*s), valid: 15 * s},
		{name: "x Unix time, read against Date", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {unix(15 * s)}, "Date": {httpDate}},
			limit:  lim(30, 15*s), valid: 15 * s},
		{name: "x Unix time with a fraction", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {unix(15*s) + ".5"}, "Date": {httpDate}},
			limit:  lim(30, 15500*time.Millisecond), valid: 15500 * time.Millisecond},
		{name: "x Unix time without Date, read against our clock", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {itoa(now.Add(15 * s).Unix())}},
			limit:  lim(30, 15*s), valid: 15 * s},
		{name: "x spent until a Unix time", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {unix(20 * s)}, "Date": {httpDate}},
			pause:  20 * s},
		{name: "x reset in milliseconds is malformed", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {itoa(date.UnixMilli())}, "Date": {httpDate}}},
		{name: "x reset already past", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {unix(-10 * s)}, "Date": {httpDate}}},
		{name: "x two values are malformed", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30", "20"}, "X-Ratelimit-Reset": {"15"}}},
		{name: "x reset missing", status: 200,
			header: map[string][]string{"X-Ratelimit-Remaining": {"30"}}},
		// The draft wins over the older forms.
		{name: "draft before older forms", status: 200,
			header: map[string][]string{"Ratelimit": {`"d";r=5;t=10`}, "X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {"15"}},
			limit:  lim(5, 10*s), valid: 10 * s},
		{name: "malformed draft falls back to older forms", status: 200,
			header: map[string][]string{"Ratelimit": {`"d";r=x`}, "X-Ratelimit-Remaining": {"30"}, "X-Ratelimit-Reset": {"15"}},
			limit:  lim(30, 15*s), valid: 15 * s},
		// 429.
		{name: "429 Retry-After seconds", status: 429,
			header: map[string][]string{"Retry-After": {"3"}},
			pause:  3 * s},
		{name: "429 Retry-After date, read against Date", status: 429,
			header: map[string][]string{"Retry-After": {date.Add(5 * s).Format(http.TimeFormat)}, "Date": {httpDate}},
			pause:  5 * s},
		{name: "429 without Retry-After: the announced reset", status: 429,
			header: map[string][]string{"Ratelimit": {`"d";r=0;t=4`}},
			pause:  4 * s},
		{name: "429 Retry-After wins over the reset", status: 429,
			header: map[string][]string{"Ratelimit": {`"d";r=0;t=4`}, "Retry-After": {"2"}},
			pause:  2 * s},
		{name: "429 bare: a second", status: 429, pause: s},
		{name: "429 malformed Retry-After: a second", status: 429,
			header: map[string][]string{"Retry-After": {"soon"}},
			pause:  s},
		{name: "429 Retry-After capped", status: 429,
			header: map[string][]string{"Retry-After": {"86400"}},
			pause:  time.Minute},
		{name: "503 Retry-After is not a quota", status: 503,
			header: map[string][]string{"Retry-After": {"3"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Header: http.Header(tc.header)}
			if resp.Header == nil {
				resp.Header = http.Header{}
			}
			pause, limit, valid := ratelimit.ParseAnnouncement(resp, now, time.Minute)
			assert.Equal(t, tc.pause, pause, "pause")
			assert.Equal(t, tc.limit, limit, "limit")
			assert.Equal(t, tc.valid, valid, "valid")
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// FuzzParseAnnouncement: no header makes the parser panic, and whatever it
// reads stays within its caps.
func FuzzParseAnnouncement(f *testing.F) {
	f.Add(200, `"default";r=50;t=30`, `"default";q=100;w=60`, "20", "4", "1700000000", "3")
	f.Add(429, `"d";r=0;t=4`, `10;w=1, 50;w=60`, "x", "", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, status int, rl, pol, rem, reset, xreset, retryAfter string) {
		h := http.Header{}
		for k, v := range map[string]string{
			"Ratelimit": rl, "Ratelimit-Policy": pol, "Ratelimit-Remaining": rem, "Ratelimit-Reset": reset,
			"X-Ratelimit-Remaining": rem, "X-Ratelimit-Reset": xreset, "Retry-After": retryAfter,
		} {
			if v != "" {
				h[k] = []string{v}
			}
		}
		resp := &http.Response{StatusCode: status, Header: h}
		pause, limit, valid := ratelimit.ParseAnnouncement(resp, time.Now(), time.Minute)
		if pause < 0 || pause > time.Minute || valid < 0 || valid > time.Minute {
			t.Fatalf("pause %v or valid %v beyond the cap", pause, valid)
		}
		if limit.Rate < 0 || limit.Period < 0 || (limit.Rate > 0) != (valid > 0) {
			t.Fatalf("limit %+v valid %v", limit, valid)
		}
	})
}
