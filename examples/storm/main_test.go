package main

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Keep-alive connections of http.DefaultTransport outlive a storm.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

func size() int {
	if testing.Short() {
		return 12
	}
	return 40
}

// playChecks plays a storm and returns its checks by name; after, if given,
// looks at the storm before it is closed.
func playChecks(t *testing.T, cfg config, after ...func(*storm)) map[string]check {
	t.Helper()
	cfg.quiet = true
	if cfg.orders == 0 {
		cfg.orders = size()
	}
	if cfg.seed == 0 {
		cfg.seed = 7
	}
	ctx := context.Background()
	s, err := newStorm(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	checks, err := s.play(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range after {
		f(s)
	}
	byName := map[string]check{}
	for _, c := range checks {
		byName[c.name] = c
		t.Log(c)
	}
	return byName
}

func mustPass(t *testing.T, checks map[string]check) {
	t.Helper()
	for _, c := range checks {
		if !c.ok {
			t.Errorf("check failed: %s", c)
		}
	}
}

const (
	checkOnce       = "side effects per unique event = 1"
	checkLostEvents = "webhook events lost = 0"
	checkState      = "orders at their latest state (no stale overwrite)"
	checkLost       = "committed messages lost before the partner = 0"
	checkOrder      = "per-key order violations at the partner = 0"
)

func TestStormPassesOnSQLite(t *testing.T) {
	// The operator's page serves while the storm runs, and shows what the
	// relay delivered and the breakers that opened.
	page := func(s *storm) {
		if s.pageURL == "" {
			t.Fatal("no operator's page")
		}
		resp, err := http.Get(s.pageURL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d, %v", s.pageURL, resp.StatusCode, err)
		}
		for _, want := range []string{"Outbox backlog", "delivered", "Circuit breakers", "partner"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("the operator's page does not say %q", want)
			}
		}
	}
	mustPass(t, playChecks(t, config{dir: t.TempDir(), ops: "127.0.0.1:0"}, page))
}

func TestStormPassesOnPostgresAndRedis(t *testing.T) {
	pg, rd := testenv.PostgresURL(t), testenv.RedisURL(t)
	t.Run("postgres", func(t *testing.T) { mustPass(t, playChecks(t, config{postgres: pg})) })
	t.Run("postgres+redis", func(t *testing.T) { mustPass(t, playChecks(t, config{postgres: pg, redis: rd})) })
}

// The report cannot pass by construction: removing a guarantee on purpose
// makes its check fail.
func TestStormChecksFailWithoutTheirGuarantee(t *testing.T) {
	cases := []struct {
		name  string
		cfg   config
		fails []string
	}{
		{"no deduplication", config{noDedupe: true}, []string{checkOnce}},
		{"no ordering guard", config{noOrderGuard: true}, []string{checkState}},
		{"no outbox", config{noOutbox: true}, []string{checkLost}},
		// The provider drops events for good: only the poller finds them.
		{"no catch-up", config{noCatchup: true}, []string{checkLostEvents}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.dir = t.TempDir()
			tc.cfg.orders = 30
			checks := playChecks(t, tc.cfg)
			for _, name := range tc.fails {
				c, ok := checks[name]
				if !ok {
					t.Fatalf("no check %q", name)
				}
				if c.ok {
					t.Errorf("%s: check %q passed; it must fail", tc.name, name)
				}
			}
		})
	}
}

func TestPlanIsFixedBySeed(t *testing.T) {
	t.Parallel()
	a, b := makePlan(42, 50), makePlan(42, 50)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed made two different plans")
	}
	if reflect.DeepEqual(a.waves, makePlan(43, 50).waves) {
		t.Fatal("two seeds made the same waves")
	}
	if chance(42, "deliver", "evt_1", 3) != chance(42, "deliver", "evt_1", 3) {
		t.Fatal("a fault decision changed between two calls")
	}
	// The plan holds what the report promises: every event at least once,
	// some concurrent duplicates, some later redeliveries, some reordering.
	count := map[string]int{}
	var concurrent, reordered int
	pos := map[string]int{}
	for i, w := range a.waves {
		if len(w) > 1 {
			concurrent++
		}
		for _, ev := range w {
			count[ev.ID]++
			if _, seen := pos[ev.ID]; !seen {
				pos[ev.ID] = i
			}
		}
	}
	for _, ev := range a.events {
		if count[ev.ID] == 0 {
			t.Fatalf("event %s is never delivered", ev.ID)
		}
		// A dropped event has one wave of its own (the moment the provider
		// creates it), and no copy.
		if a.dropped[ev.ID] && count[ev.ID] != 1 {
			t.Fatalf("dropped event %s has %d copies", ev.ID, count[ev.ID])
		}
		if ev.Version > 1 {
			prev := strings.TrimSuffix(ev.ID, string(rune('0'+ev.Version))) + string(rune('0'+ev.Version-1))
			if pos[prev] > pos[ev.ID] {
				reordered++
			}
		}
	}
	if concurrent == 0 || reordered == 0 || len(a.waves) <= len(a.events) {
		t.Fatalf("plan too tame: %d concurrent waves, %d reordered events, %d waves for %d events", concurrent, reordered, len(a.waves), len(a.events))
	}
	// Some events are dropped for good, about 5%, and at least one even in
	// the smallest plans (the tests' and -short's).
	if n := len(a.dropped); n < 4 || n > 20 {
		t.Fatalf("%d of %d events dropped, want about 5%%", n, len(a.events))
	}
	for _, orders := range []int{1, 12, 30, 40} {
		for seed := range uint64(20) {
			if p := makePlan(seed, orders); len(p.dropped) == 0 {
				t.Fatalf("seed %d, %d orders: no event dropped", seed, orders)
			}
		}
	}
}
