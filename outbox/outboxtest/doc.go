// Package outboxtest is the conformance suite of outbox.Store: Run checks a
// backend against everything the relay relies on (exclusive claims, per-key
// heads, token-guarded write-back, lease takeover, releases, dead letters,
// cleanup) and drives real relays over it (rollback, commits out of id
// order, poison heads, paused destinations, retries, clean stops, four
// relays delivering exactly once). Every store in outbox/sqloutbox runs it;
// run it against your own backend the way testing/slogtest checks a
// slog.Handler.
//
// It also offers Recorder, a Publisher for tests.
package outboxtest
