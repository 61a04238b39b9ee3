// Package pubtest holds what the tests and benchmarks of the outbox
// publishers share: an outbox of a test's own (SQLite, PostgreSQL, or in
// memory for testing/synctest bubbles), a relay that stops with
// the test, waiting helpers, and the throughput benchmark that compares a
// publisher driven by the relay with its broker client publishing directly.
package pubtest
