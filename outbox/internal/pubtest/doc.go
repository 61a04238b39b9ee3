// Package pubtest holds what the tests and benchmarks of the outbox
// publishers share: a SQLite outbox of a test's own, a relay that stops with
// the test, waiting helpers, and the throughput benchmark that compares a
// publisher driven by the relay with its broker client publishing directly.
package pubtest
