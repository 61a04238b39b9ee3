package ratelimit

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

// announcement is what a response announced about its key's quota.
type announcement struct {
	pause time.Duration // > 0: nothing before this delay
	limit Limit         // Rate > 0: Rate requests left per Period
	valid time.Duration // how long limit holds
}

// pause429 is how long a 429 without Retry-After or reset stops its key.
const pause429 = time.Second

// Bounds on what a provider may announce; beyond them a field is malformed.
const (
	maxAnnounced = 1<<31 - 1          // remaining requests, quota
	maxReset     = 366 * 24 * 60 * 60 // seconds
)

// Canonical header keys, looked up in http.Header without allocating.
const (
	hRateLimit     = "Ratelimit"
	hPolicy        = "Ratelimit-Policy"
	hRemaining     = "Ratelimit-Remaining"
	hReset         = "Ratelimit-Reset"
	hXRemaining    = "X-Ratelimit-Remaining"
	hXReset        = "X-Ratelimit-Reset"
	hRetryAfter    = "Retry-After"
	hDate          = "Date"
	unitRequests   = "requests"
	paramRemaining = "r"
	paramReset     = "t"
	paramQuota     = "q"
	paramWindow    = "w"
	paramQuotaUnit = "qu"
)

// announces reports, without allocating, whether resp may announce
// anything: a 429, or one of the fields of a budget.
func announces(resp *http.Response) bool {
	if resp.StatusCode == http.StatusTooManyRequests {
		return true
	}
	h := resp.Header
	return len(h[hRateLimit]) > 0 || len(h[hPolicy]) > 0 || len(h[hRemaining]) > 0 || len(h[hXRemaining]) > 0
}

// parseAnnouncement reads what resp announced, received at now; nothing
// lasts longer than maxPause.
func parseAnnouncement(resp *http.Response, now time.Time, maxPause time.Duration) announcement {
	h := resp.Header
	date := now
	if v := single(h, hDate); v != "" {
		if t, err := http.ParseTime(v); err == nil {
			date = t
		}
	}
	var a announcement
	rem, reset, ok := budget(h, date)
	if ok && reset > 0 {
		if rem == 0 {
			a.pause = min(reset, maxPause)
		} else {
			a.limit = Limit{Rate: int(rem), Period: reset}
			a.valid = min(reset, maxPause)
		}
	}
	if !ok {
		if q, w, ok := policy(h); ok {
			a.limit = Limit{Rate: int(q), Period: w}
			a.valid = min(w, maxPause)
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		d, ok := httpx.ParseRetryAfter(single(h, hRetryAfter), date)
		switch {
		case ok && d > 0:
			a.pause = min(d, maxPause)
		case a.pause == 0 && reset > 0:
			a.pause = min(reset, maxPause)
		case a.pause == 0:
			a.pause = pause429
		}
	}
	return a
}

// single returns the only value of the field k, or "" when there is none or
// more than one.
func single(h http.Header, k string) string {
	if v := h[k]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// budget returns the remaining requests and the time to the reset that a
// response announced, in the first form it carries: the current draft's
// RateLimit (the most restrictive of its request quotas), the older draft's
// RateLimit-Remaining and RateLimit-Reset, or X-RateLimit-Remaining and
// X-RateLimit-Reset.
func budget(h http.Header, date time.Time) (int64, time.Duration, bool) {
	if len(h[hRateLimit]) > 0 {
		if rem, reset, ok := draftBudget(h); ok {
			return rem, reset, true
		}
	}
	if v := single(h, hRemaining); v != "" {
		rem, ok1 := leadingInt(v)
		reset, ok2 := leadingInt(single(h, hReset))
		if ok1 && ok2 && reset <= maxReset {
			return rem, time.Duration(reset) * time.Second, true
		}
	}
	if v := single(h, hXRemaining); v != "" {
		rem, ok1 := leadingInt(v)
		reset, ok2 := xReset(single(h, hXReset), date)
		if ok1 && ok2 {
			return rem, reset, true
		}
	}
	return 0, 0, false
}

type quota struct {
	q        int64
	w        time.Duration
	requests bool
}

// policies reads RateLimit-Policy: its request quotas by name. The current
// draft's members are strings with parameters q, qu and w; the older draft's
// are integers (the quota) with a parameter w.
func policies(h http.Header) map[string]quota {
	list, err := httpsfv.UnmarshalList(h[hPolicy])
	if err != nil {
		return nil
	}
	out := make(map[string]quota, len(list))
	for i, m := range list {
		it, ok := m.(httpsfv.Item)
		if !ok {
			continue
		}
		var q quota
		var name string
		switch v := it.Value.(type) {
		case string:
			name = v
			q.q, ok = intParam(it.Params, paramQuota, maxAnnounced)
		case httpsfv.Token:
			name = string(v)
			q.q, ok = intParam(it.Params, paramQuota, maxAnnounced)
		case int64:
			name, q.q, ok = strconv.Itoa(i), v, v >= 0 && v <= maxAnnounced
		default:
			continue
		}
		if !ok {
			continue
		}
		if w, ok := intParam(it.Params, paramWindow, maxReset); ok {
			q.w = time.Duration(w) * time.Second
		}
		q.requests = true
		if u, ok := it.Params.Get(paramQuotaUnit); ok {
			s, isStr := u.(string)
			if t, isTok := u.(httpsfv.Token); isTok {
				s, isStr = string(t), true
			}
			q.requests = isStr && s == unitRequests
		}
		out[name] = q
	}
	return out
}

// draftBudget reads the current draft's RateLimit: for each request quota,
// its remaining budget r and reset t (delta-seconds; the policy's window
// when absent), and returns the most restrictive.
func draftBudget(h http.Header) (int64, time.Duration, bool) {
	list, err := httpsfv.UnmarshalList(h[hRateLimit])
	if err != nil {
		return 0, 0, false
	}
	var pols map[string]quota
	if len(h[hPolicy]) > 0 {
		pols = policies(h)
	}
	best, bestReset, found := int64(0), time.Duration(0), false
	for _, m := range list {
		it, ok := m.(httpsfv.Item)
		if !ok {
			continue
		}
		var name string
		switch v := it.Value.(type) {
		case string:
			name = v
		case httpsfv.Token:
			name = string(v)
		default:
			continue
		}
		pol, known := pols[name]
		if known && !pol.requests {
			continue
		}
		r, ok := intParam(it.Params, paramRemaining, maxAnnounced)
		if !ok {
			continue
		}
		var reset time.Duration
		if t, ok := intParam(it.Params, paramReset, maxReset); ok {
			reset = time.Duration(t) * time.Second
		} else if known && pol.w > 0 {
			reset = pol.w
		} else {
			continue
		}
		// The most restrictive: the lowest rate r/reset; a spent quota
		// (r = 0) wins, the longest of them.
		if !found || restrictive(r, reset, best, bestReset) {
			best, bestReset, found = r, reset, true
		}
	}
	return best, bestReset, found
}

// restrictive reports whether r per reset is more restrictive than r0 per
// reset0.
func restrictive(r int64, reset time.Duration, r0 int64, reset0 time.Duration) bool {
	if r == 0 || r0 == 0 {
		return r == 0 && (r0 != 0 || reset > reset0)
	}
	if reset0 == 0 {
		return reset > 0
	}
	if reset == 0 {
		return false
	}
	return float64(r)/reset.Seconds() < float64(r0)/reset0.Seconds()
}

// policy returns the most restrictive request quota of RateLimit-Policy that
// has a window.
func policy(h http.Header) (int64, time.Duration, bool) {
	if len(h[hPolicy]) == 0 {
		return 0, 0, false
	}
	var best quota
	found := false
	for _, q := range policies(h) {
		if !q.requests || q.w <= 0 || q.q <= 0 {
			continue
		}
		if !found || float64(q.q)/q.w.Seconds() < float64(best.q)/best.w.Seconds() {
			best, found = q, true
		}
	}
	return best.q, best.w, found
}

func intParam(p *httpsfv.Params, k string, limit int64) (int64, bool) {
	v, ok := p.Get(k)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	return n, ok && n >= 0 && n <= limit
}

// leadingInt parses a non-negative integer, alone or as the first member of
// a list ("10", "10, 10;w=1"), as the older drafts allow.
func leadingInt(s string) (int64, bool) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	start := i
	var n int64
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + int64(s[i]-'0')
		if n > maxAnnounced {
			return 0, false
		}
		i++
	}
	if i == start {
		return 0, false
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	if i < len(s) && s[i] != ',' && s[i] != ';' {
		return 0, false
	}
	return n, true
}

// xReset reads X-RateLimit-Reset: a Unix time (possibly with a fraction)
// when it is within a year after the response's Date (or a day before it:
// a reset already past means 0), else delta-seconds of at most a year.
func xReset(s string, date time.Time) (time.Duration, bool) {
	if s == "" || len(s) > 24 {
		return 0, false
	}
	dot := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' && !dot && i > 0 && i < len(s)-1 {
			dot = true
			continue
		}
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, false
	}
	du := float64(date.Unix()) + float64(date.Nanosecond())/1e9
	switch {
	case v >= du-24*60*60 && v <= du+maxReset:
		return max(0, time.Duration((v-du)*float64(time.Second))), true
	case v <= maxReset:
		return time.Duration(v * float64(time.Second)), true
	}
	return 0, false
}
