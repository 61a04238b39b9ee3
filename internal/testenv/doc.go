// Package testenv gives integration tests the addresses of the servers they
// talk to. Each address comes from an environment variable (TEST_POSTGRES_URL,
// TEST_REDIS_URL, TEST_MYSQL_URL, TEST_NATS_URL, TEST_AMQP_URL). When one is
// unset the test is skipped with a message that names the variable, except
// when CI is set: then a missing server is a failure, so that CI never skips
// an integration test silently.
package testenv
