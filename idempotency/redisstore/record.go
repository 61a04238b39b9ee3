package redisstore

import (
	"fmt"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// A record is one Redis string, so that the common operations are one plain
// command or a script doing one GET and one SET (a hash costs Redis several
// times more per call). Its layout, every number in lower-case hex of fixed
// width:
//
//	offset 0   status: '1' in progress, '2' completed
//	       1   fencing token, 16 digits
//	      17   in progress: the abandoned-claim retention in milliseconds;
//	           completed: when the record expires, in Unix milliseconds on
//	           the server's clock (Complete reads it from Redis's TIME;
//	           zeros in a record completed by an earlier version);
//	           16 digits
//	      33   fingerprint length, 2 digits
//	      35   fingerprint
//	           response (completed records), to the end
//
// Time is the server's and lives in the key's expiry, set by Redis from
// its own clock: an in-progress record expires at the end of its lease plus
// the abandoned-claim retention, so what is left of its lease is the key's
// PTTL minus that retention; a completed record expires at the end of its
// retention, which is its PTTL, and carries that instant in its value, so
// that a replay needs no PTTL (see serverClock).
const (
	statusHeld     = '1'
	statusDone     = '2'
	offToken       = 1
	offAbandoned   = 17
	offFingerprint = 33
	headerLen      = 35
)

const hexDigits = "0123456789abcdef"

// putHex writes v into b as len(b) hex digits.
func putHex(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// parseHex reads s, of at most 16 lower-case hex digits.
func parseHex(s string) (uint64, bool) {
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, len(s) > 0
}

// heldRecord returns the value of a new claim.
func heldRecord(token int64, abandonedMs int64, fingerprint string) []byte {
	b := make([]byte, headerLen+len(fingerprint))
	b[0] = statusHeld
	putHex(b[offToken:offAbandoned], uint64(token))
	putHex(b[offAbandoned:offFingerprint], uint64(abandonedMs))
	putHex(b[offFingerprint:headerLen], uint64(len(fingerprint)))
	copy(b[headerLen:], fingerprint)
	return b
}

// heldPrefix returns the first bytes of the value of the claim that holds
// token: what the scripts compare to find it.
func heldPrefix(token int64) string {
	var b [offAbandoned]byte
	b[0] = statusHeld
	putHex(b[offToken:], uint64(token))
	return string(b[:])
}

// parseValue reads the record of key from its value v and its key's PTTL
// in milliseconds (-1 when the key has no expiry, which no record of this
// store lacks; -2 when it is gone).
func parseValue(key, v string, pttl int64) (idempotency.Record, error) {
	rec, ab, err := decodeValue(key, v)
	if err != nil {
		return idempotency.Record{}, err
	}
	switch {
	case pttl == -1:
		return idempotency.Record{}, fmt.Errorf("%w: record %q does not expire", ErrCorrupt, key)
	case pttl < 0:
		// -2: the key expired between its read and its PTTL's (the two
		// are sent together but not as a transaction).
		pttl = 0
	}
	if rec.Status == idempotency.StatusInProgress {
		rec.TTL = time.Duration(max(pttl-int64(ab), 0)) * time.Millisecond
	} else {
		rec.TTL = time.Duration(pttl) * time.Millisecond
	}
	return rec, nil
}

// decodeValue reads the record of key from its value v, all but its TTL,
// and the field at offset 17: the abandoned-claim retention of a claim in
// progress, the expiry (0 when unknown) of a completed record.
func decodeValue(key, v string) (idempotency.Record, uint64, error) {
	if len(v) < headerLen {
		return idempotency.Record{}, 0, fmt.Errorf("%w: record %q is %d bytes", ErrCorrupt, key, len(v))
	}
	tok, ok1 := parseHex(v[offToken:offAbandoned])
	ab, ok2 := parseHex(v[offAbandoned:offFingerprint])
	fpLen, ok3 := parseHex(v[offFingerprint:headerLen])
	if !ok1 || !ok2 || !ok3 || uint64(len(v)-headerLen) < fpLen {
		return idempotency.Record{}, 0, fmt.Errorf("%w: record %q has a malformed header", ErrCorrupt, key)
	}
	end := headerLen + int(fpLen)
	rec := idempotency.Record{Key: key, Fingerprint: v[headerLen:end], Token: int64(tok)}
	switch v[0] {
	case statusHeld:
		if end != len(v) || ab > maxMillis {
			return idempotency.Record{}, 0, fmt.Errorf("%w: record %q has a malformed claim", ErrCorrupt, key)
		}
		rec.Status = idempotency.StatusInProgress
	case statusDone:
		rec.Status = idempotency.StatusCompleted
		rec.Response = []byte(v[end:])
	default:
		return idempotency.Record{}, 0, fmt.Errorf("%w: record %q status %q", ErrCorrupt, key, v[0])
	}
	return rec, ab, nil
}
