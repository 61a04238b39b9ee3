package catchup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/steadfast-go/steadfast/idempotency"
)

// The bounds of what a provider controls.
const (
	// maxEventSize bounds a webhook body (larger ones get 413) and an event
	// of a listed page (larger ones are refused).
	maxEventSize = 1 << 20
	// maxIDLen is the longest event id: what idempotency/sqlstore's inbox
	// holds.
	maxIDLen = 1024
	// maxTypeLen is the longest event type.
	maxTypeLen = 255
	// maxCursorLen is the longest cursor the poller stores; an event whose
	// cursor is longer (or not UTF-8, or holds a NUL) is applied, but the
	// stored cursor stays at the one before it.
	maxCursorLen = 8 << 10
	// maxReasonLen bounds a stored reason (a handler's error).
	maxReasonLen = 4 << 10
	// maxAhead is how far ahead of this process's clock a creation time may
	// be; a later one counts as unknown for the overlap window and the lag.
	maxAhead = 24 * time.Hour
)

// checkEvent refuses, for good, an event whose id or type no inbox or store
// could keep as it is, or that is too large: the error matches
// idempotency.ErrInvalid or idempotency.ErrTooLarge. ev.ID is set.
func checkEvent(ev *Event) error {
	switch {
	case len(ev.ID) > maxIDLen:
		return fmt.Errorf("%w: the event's id (%.40q...) is %d bytes, at most %d", idempotency.ErrTooLarge, ev.ID, len(ev.ID), maxIDLen)
	case !printable(ev.ID):
		return fmt.Errorf("%w: the event's id %.64q is not printable UTF-8", idempotency.ErrInvalid, ev.ID)
	case len(ev.Type) > maxTypeLen:
		return fmt.Errorf("%w: the event's type (%.40q...) is %d bytes, at most %d", idempotency.ErrTooLarge, ev.Type, len(ev.Type), maxTypeLen)
	case !printable(ev.Type):
		return fmt.Errorf("%w: the event's type %.64q is not printable UTF-8", idempotency.ErrInvalid, ev.Type)
	case len(ev.Payload) > maxEventSize:
		return fmt.Errorf("%w: the event is %d bytes, at most %d", idempotency.ErrTooLarge, len(ev.Payload), maxEventSize)
	}
	return nil
}

// printable reports whether s is UTF-8 without control characters.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return printableSlow(s)
		}
	}
	return true
}

func printableSlow(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validName reports whether name can name a source or a consumer: what the
// stores' columns hold.
func validName(name string) bool {
	return name != "" && len(name) <= 255 && utf8.ValidString(name) && !strings.ContainsRune(name, 0)
}

// storableCursor reports whether the store can keep cursor.
func storableCursor(cursor string) bool {
	return len(cursor) <= maxCursorLen && utf8.ValidString(cursor) && !strings.ContainsRune(cursor, 0)
}

// storable returns what of ev a store can keep: ev itself when it passed
// checkEvent; for a refused event, its id replaced by a digest when it
// cannot be kept, its type cut to its printable prefix, its payload to its
// first MiB. A cursor that cannot be kept is dropped.
func storable(ev Event) Event {
	if ev.ID == "" || len(ev.ID) > maxIDLen || !printable(ev.ID) {
		var sum [sha256.Size]byte
		if ev.ID != "" {
			sum = sha256.Sum256([]byte(ev.ID))
		} else {
			sum = sha256.Sum256(ev.Payload)
		}
		ev.ID = "sha256:" + hex.EncodeToString(sum[:])
	}
	if len(ev.Type) > maxTypeLen || !printable(ev.Type) {
		t := ev.Type[:min(len(ev.Type), maxTypeLen)]
		if i := strings.IndexFunc(t, func(r rune) bool { return r == utf8.RuneError || unicode.IsControl(r) }); i >= 0 {
			t = t[:i]
		}
		ev.Type = t
	}
	if len(ev.Payload) > maxEventSize {
		ev.Payload = ev.Payload[:maxEventSize]
	}
	if !storableCursor(ev.Cursor) {
		ev.Cursor = ""
	}
	return ev
}

// reason returns err's text as a store keeps it: valid UTF-8 without NUL,
// at most maxReasonLen bytes, cut at a character's boundary.
func reason(err error) string {
	s := err.Error()
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
	}
	if len(s) <= maxReasonLen {
		return s
	}
	n := maxReasonLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
