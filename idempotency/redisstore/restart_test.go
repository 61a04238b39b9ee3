package redisstore_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/internal/durabletest"
	"github.com/steadfast-go/steadfast/idempotency/redisstore"
	"github.com/steadfast-go/steadfast/internal/testserver"
)

// TestRedisRestartMidRun: a redis-server of the test's own, with AOF and
// appendfsync always, is killed (SIGKILL) while four replicas handle webhook
// deliveries, and started again from its AOF. During the outage, events sent
// for the first time get 503 and run no handler; afterwards the replicas
// recover by themselves and every delivery ends in 200. Only events whose
// request was in flight when the server died may run twice: counted and
// reported.
func TestRedisRestartMidRun(t *testing.T) {
	srv := testserver.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	restartRun(t, srv)
}

func restartRun(t *testing.T, srv *testserver.Redis) {
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	res := durabletest.Outage{
		Store: func(t *testing.T, _ int) idempotency.Store {
			o := *opt
			o.PoolSize = 4
			rdb := redis.NewClient(&o)
			t.Cleanup(func() { rdb.Close() })
			s, err := redisstore.New(rdb)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Down: srv.Kill,
		Up:   srv.Start,
	}.Run(t)
	t.Logf("%d events, %d answered 503 during the outage, %d requests in flight at the outage, %d events' responses not stored, %d events' handlers ran twice",
		res.Events, res.Unavailable, res.InFlight, res.Unstored, res.Doubles)
}
