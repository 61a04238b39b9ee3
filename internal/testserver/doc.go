// Package testserver starts servers of a test's own — PostgreSQL, Redis and
// NATS — on free loopback ports, with their data in a temporary directory
// that is removed when the test ends, so that a test may stop, kill and
// restart them without touching the shared servers. It also offers a TCP
// proxy that cuts or hangs connections, a cheaper way to simulate an outage.
//
// PostgreSQL's server refuses to run as root; when the test runs as root the
// cluster is created and run as the postgres OS user through runuser.
//
// A missing server binary skips the test, or fails it when CI is set.
package testserver
