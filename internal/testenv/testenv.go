package testenv

import (
	"os"
	"testing"
)

// Variable names of the integration test servers.
const (
	PostgresVar = "TEST_POSTGRES_URL"
	RedisVar    = "TEST_REDIS_URL"
	MySQLVar    = "TEST_MYSQL_URL"
	NATSVar     = "TEST_NATS_URL"
	AMQPVar     = "TEST_AMQP_URL"
)

// PostgresURL returns TEST_POSTGRES_URL (a pgx connection string such as
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable), or skips the test.
func PostgresURL(t testing.TB) string { return need(t, PostgresVar) }

// RedisURL returns TEST_REDIS_URL (redis://127.0.0.1:6379/0), or skips the test.
func RedisURL(t testing.TB) string { return need(t, RedisVar) }

// MySQLURL returns TEST_MYSQL_URL, a go-sql-driver/mysql DSN such as
// root@tcp(127.0.0.1:3306)/test, or skips the test.
func MySQLURL(t testing.TB) string { return need(t, MySQLVar) }

// NATSURL returns TEST_NATS_URL (nats://127.0.0.1:4222), or skips the test.
func NATSURL(t testing.TB) string { return need(t, NATSVar) }

// AMQPURL returns TEST_AMQP_URL (amqp://guest:guest@127.0.0.1:5672/), or skips the test.
func AMQPURL(t testing.TB) string { return need(t, AMQPVar) }

// CI reports whether the tests run under CI (the CI variable is set and not
// "false" or "0"). Under CI nothing may skip for lack of a server.
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// NeedServers fails the test under CI, and skips it otherwise, with a message
// that says why. Tests that start servers of their own (see
// internal/testserver) call it when a binary they need is missing.
func NeedServers(t testing.TB, why string) {
	t.Helper()
	if CI() {
		t.Fatalf("CI is set but %s", why)
	}
	t.Skipf("integration test skipped: %s", why)
}

func need(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		NeedServers(t, name+" is not set (see .ci/run for how to start the server)")
	}
	return v
}
