package ratelimit_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/steadfast-go/steadfast/ratelimit"
)

// The limiter's own cost is measured against golang.org/x/time/rate alone,
// with the same rate and burst, on the path where a token is available: a
// loop takes tokens faster than a million a second, so both sides move to a
// fresh bucket (a new rate.Limiter, a new key) every 2^18 requests, well
// within the burst. Each side runs alone; rounds alternate when
// the test binary is run several times, and a ratio is taken per round:
//
//	go test -c -o /tmp/ratelimit.test ./ratelimit &&
//	for i in 1 2 3 4 5; do /tmp/ratelimit.test -test.run '^$' -test.bench 'Wait|Transport' -test.benchmem -test.benchtime 2s; done
//
// (the ratio ratelimit/x-time-rate of each round, then their median and
// range).

const benchRate, benchBurst = 1_000_000, 1 << 20

// refresh is how many requests a bucket serves in a benchmark.
const refresh = 1 << 18

// benchKeys are fresh keys, one per refresh requests.
var benchKeys = func() []string {
	k := make([]string, 4096)
	for i := range k {
		k[i] = "api-" + strconv.Itoa(i) + ".example.com"
	}
	return k
}()

// BenchmarkWait compares Limiter.Wait on one window, for one key, with
// rate.Limiter.Wait.
func BenchmarkWait(b *testing.B) {
	ctx := context.Background()
	b.Run("x-time-rate", func(b *testing.B) {
		lim := rate.NewLimiter(benchRate, benchBurst)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i++; i%refresh == 0 {
				lim = rate.NewLimiter(benchRate, benchBurst)
			}
			if err := lim.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ratelimit", func(b *testing.B) {
		lim, err := ratelimit.New(ratelimit.WithLimit(benchRate, time.Second, benchBurst), ratelimit.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := lim.Wait(ctx, benchKeys[i/refresh%len(benchKeys)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTransport compares a request through the Transport (a token is
// available, the response announces nothing) with the limiter's Wait and
// the next RoundTripper called one after the other.
func BenchmarkTransport(b *testing.B) {
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}}
	next := &fakeNext{resp: func() *http.Response { return resp }}
	req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/v1/charges", nil)
	newLim := func(b *testing.B) *ratelimit.Limiter {
		lim, err := ratelimit.New(ratelimit.WithLimit(benchRate, time.Second, benchBurst), ratelimit.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		return lim
	}
	b.Run("wait+next", func(b *testing.B) {
		lim := newLim(b)
		ctx := req.Context()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if err := lim.Wait(ctx, benchKeys[i/refresh%len(benchKeys)]); err != nil {
				b.Fatal(err)
			}
			if _, err := next.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("transport", func(b *testing.B) {
		i := 0
		tr, err := ratelimit.NewTransport(next, newLim(b), ratelimit.WithKey(func(*http.Request) string {
			return benchKeys[i/refresh%len(benchKeys)]
		}))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			i++
			if _, err := tr.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// nopStore lets everything through at once, without I/O.
type nopStore struct{}

func (nopStore) Reserve(context.Context, string, []ratelimit.Limit, time.Duration, time.Duration) (time.Duration, error) {
	return 0, nil
}
func (nopStore) Pause(context.Context, string, time.Duration) error { return nil }
func (nopStore) Learn(context.Context, string, ratelimit.Limit, time.Duration, time.Duration) error {
	return nil
}

// BenchmarkSharedOverhead measures what a Limiter adds around a Store's
// decision (the key's entry, the breaker, the bookkeeping of the local
// share), with a Store that does no I/O: the part of a shared decision that
// is not the Redis round trip (compare with redislimit's BenchmarkDecision).
func BenchmarkSharedOverhead(b *testing.B) {
	ctx := context.Background()
	limits := []ratelimit.Limit{{Rate: benchRate, Period: time.Second, Burst: benchBurst}}
	b.Run("store", func(b *testing.B) {
		var s ratelimit.Store = nopStore{}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Reserve(ctx, "api.example.com", limits, 0, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("limiter", func(b *testing.B) {
		lim, err := ratelimit.New(ratelimit.WithLimit(benchRate, time.Second, benchBurst), ratelimit.WithStore(nopStore{}, 4), ratelimit.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := lim.Allow(ctx, "api.example.com"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
