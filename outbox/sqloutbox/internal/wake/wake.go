// Package wake holds what the PostgreSQL store's notifications and
// pgxoutbox's listener agree on.
//
// Enqueue sends a NOTIFY at most once per Debounce from one store (the
// transactions that notify queue at commit on a lock of the whole server,
// so a NOTIFY from every transaction of busy writers serialises their
// commits). A transaction that enqueues within Debounce of another one's
// NOTIFY sends none: a listener wakes its relay again Soon and Late after
// the last notification it got, which finds such a transaction's messages
// if it committed within Late - Debounce of its Enqueue; later than that (a
// notifying transaction that rolled back, a long one), they wait for the
// next notification or poll.
package wake

import "time"

const (
	// Debounce is the least time between two NOTIFYs of one store.
	Debounce = 10 * time.Millisecond
	// Soon and Late are how long after the last notification a listener
	// wakes its relay once more, twice.
	Soon = 2 * Debounce
	Late = 60 * time.Millisecond
)
