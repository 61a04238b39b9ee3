package idempotency

import (
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// The stored form of a middleware response:
//
//	kind byte ('r' a response, 't' a marker for one too large to keep)
//	uvarint status
//	uvarint number of header fields, then each field:
//	  uvarint name length, name, uvarint number of values,
//	  then each value: uvarint length, value
//	body (the rest; empty in a marker)
const (
	kindResponse byte = 'r'
	kindTooLarge byte = 't'
)

var errCorrupt = errors.New("idempotency: stored response corrupt")

// appendResponse appends the stored form of a response to b, keeping only
// the header fields named in allowed (canonical names). A body over maxBody
// is replaced by a marker.
func appendResponse(b []byte, status int, h http.Header, allowed []string, body []byte, maxBody int) []byte {
	b, body = appendResponseHead(b, status, h, allowed, body, maxBody, true)
	return append(b, body...)
}

// newResponse returns the stored form of a response, as appendResponse, in
// new memory of its own, with one allocation that is not cleared before
// the body is copied in; scratch holds the head meanwhile, and is
// returned for reuse.
func newResponse(scratch []byte, status int, h http.Header, allowed []string, body []byte, maxBody int) (stored, reuse []byte) {
	head, body := appendResponseHead(scratch[:0], status, h, allowed, body, maxBody, false)
	if len(body) == 0 {
		stored = append([]byte(nil), head...)
	} else {
		// head is full: append moves it and the body to new memory.
		stored = append(head[:len(head):len(head)], body...)
	}
	return stored, head[:0]
}

// appendResponseHead appends the stored form of a response but its body
// to b, with room for the body if roomForBody, and returns the body to
// append after it: body, or nil for a marker.
func appendResponseHead(b []byte, status int, h http.Header, allowed []string, body []byte, maxBody int, roomForBody bool) ([]byte, []byte) {
	kind := kindResponse
	if len(body) > maxBody {
		kind, body = kindTooLarge, nil
	}
	var room [8]storedField
	fields := storedFields(room[:0], h, allowed)
	size := 1 + binary.MaxVarintLen64*2
	if roomForBody {
		size += len(body)
	}
	for _, f := range fields {
		size += 2*binary.MaxVarintLen64 + len(f.name)
		for _, v := range f.values {
			size += binary.MaxVarintLen64 + len(v)
		}
	}
	b = slices.Grow(b, size)
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(status))
	b = binary.AppendUvarint(b, uint64(len(fields)))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f.name)))
		b = append(b, f.name...)
		b = binary.AppendUvarint(b, uint64(len(f.values)))
		for _, v := range f.values {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return b, body
}

// storedField is a header field that a stored response keeps, and its
// place in the allowed names.
type storedField struct {
	name   string
	values []string
	at     int
}

// storedFields appends to fields the fields of h named in allowed that
// have values, in the order of allowed. It looks up the fewer of the two:
// the names of h in allowed, or those of allowed in h (a handler usually
// sets one or two of the nine default names).
func storedFields(fields []storedField, h http.Header, allowed []string) []storedField {
	if len(h) >= len(allowed) {
		for i, name := range allowed {
			if vs := h[name]; len(vs) > 0 {
				fields = append(fields, storedField{name, vs, i})
			}
		}
		return fields
	}
	for name, vs := range h {
		if len(vs) == 0 {
			continue
		}
		i := slices.Index(allowed, name)
		if i < 0 {
			continue
		}
		// Insertion in the order of allowed: h holds few fields.
		j := len(fields)
		fields = append(fields, storedField{})
		for j > 0 && fields[j-1].at > i {
			fields[j] = fields[j-1]
			j--
		}
		fields[j] = storedField{name, vs, i}
	}
	return fields
}

// tooLargeMarker returns the stored form of a response with status whose
// body was too large to keep.
func tooLargeMarker(status int) []byte {
	return appendResponse(nil, status, nil, nil, nil, -1)
}

type storedResponse struct {
	tooLarge bool
	status   int
	body     []byte
	// spare is the free values asked of decodeResponse, for the caller to
	// fill and set, each as a one-value slice: spare[i:i+1:i+1].
	spare []string
}

// decodeResponse decodes a stored response, adding its header fields to
// hdr, except those that must never be replayed. Header names are taken
// from allowed where they match, to save copying them; the body aliases b.
// However many fields there are, it allocates one slice for every value
// (and spare more, handed back in storedResponse.spare) and one string for
// their bytes, unless every value is a common one (commonValue). On error,
// hdr is as it was.
func decodeResponse(b []byte, allowed []string, hdr http.Header, spare int) (storedResponse, error) {
	var r storedResponse
	if len(b) == 0 || (b[0] != kindResponse && b[0] != kindTooLarge) {
		return r, errCorrupt
	}
	r.tooLarge = b[0] == kindTooLarge
	status, i := uvarintAt(b, 1)
	if i < 0 || status < 200 || status > 999 {
		return r, errCorrupt
	}
	r.status = int(status)
	n, i := uvarintAt(b, i)
	if i < 0 || n > uint64(len(b)-i) {
		return r, errCorrupt
	}
	fields := i
	// First pass: check the fields, count their values and bytes.
	nvalues, nbytes := 0, 0
	for range n {
		if i = skipBytes(b, i); i < 0 {
			return r, errCorrupt
		}
		var nv uint64
		nv, i = uvarintAt(b, i)
		if i < 0 || nv == 0 || nv > uint64(len(b)-i) {
			return r, errCorrupt
		}
		for range nv {
			var l uint64
			l, i = uvarintAt(b, i)
			if i < 0 || l > uint64(len(b)-i) {
				return r, errCorrupt
			}
			v := b[i : i+int(l)]
			i += int(l)
			if _, ok := commonValue(v); !ok {
				nbytes += len(v)
			}
		}
		nvalues += int(nv)
	}
	r.body = b[i:]
	// Second pass: the fields are known to be well formed.
	vs := make([]string, nvalues+spare)
	var buf strings.Builder
	if nbytes > 0 {
		buf.Grow(nbytes)
	}
	i = fields
	vi := 0
	for range n {
		var raw []byte
		raw, i = bytesAt(b, i)
		name := internName(raw, allowed)
		var nv uint64
		nv, i = uvarintAt(b, i)
		first := vi
		for range nv {
			var v []byte
			v, i = bytesAt(b, i)
			if c, ok := commonValue(v); ok {
				vs[vi] = c
			} else {
				from := buf.Len()
				buf.Write(v)
				// A Builder's String never changes once returned.
				vs[vi] = buf.String()[from:]
			}
			vi++
		}
		if !neverStored(name) {
			hdr[name] = vs[first:vi:vi]
		}
	}
	r.spare = vs[vi:]
	return r, nil
}

// uvarintAt reads the uvarint at b[i:], and returns it and the index after
// it, or -1 if there is none.
func uvarintAt(b []byte, i int) (uint64, int) {
	if i < len(b) && b[i] < 0x80 {
		// One byte: the lengths and counts of nearly every response.
		return uint64(b[i]), i + 1
	}
	return longUvarintAt(b, i)
}

func longUvarintAt(b []byte, i int) (uint64, int) {
	if i < 0 || i > len(b) {
		return 0, -1
	}
	v, n := binary.Uvarint(b[i:])
	if n <= 0 {
		return 0, -1
	}
	return v, i + n
}

// skipBytes returns the index after the uvarint length at b[i:] and that
// many bytes, or -1 if they are not there.
func skipBytes(b []byte, i int) int {
	l, i := uvarintAt(b, i)
	if i < 0 || l > uint64(len(b)-i) {
		return -1
	}
	return i + int(l)
}

// bytesAt returns the bytes that skipBytes skips, and the index after
// them. b[i:] must hold them.
func bytesAt(b []byte, i int) ([]byte, int) {
	l, i := uvarintAt(b, i)
	return b[i : i+int(l)], i + int(l)
}

// commonValue returns the string of a header value that many responses
// share, so that a replay need not copy it.
func commonValue(v []byte) (string, bool) {
	switch string(v) { // no allocation
	case "application/json":
		return "application/json", true
	case "application/json; charset=utf-8":
		return "application/json; charset=utf-8", true
	case "application/problem+json":
		return "application/problem+json", true
	case "text/plain; charset=utf-8":
		return "text/plain; charset=utf-8", true
	case "text/html; charset=utf-8":
		return "text/html; charset=utf-8", true
	case "application/octet-stream":
		return "application/octet-stream", true
	case "gzip":
		return "gzip", true
	case "br":
		return "br", true
	case "no-store":
		return "no-store", true
	case "no-cache":
		return "no-cache", true
	case "private":
		return "private", true
	}
	return "", false
}

func internName(name []byte, allowed []string) string {
	for _, a := range allowed {
		if a == string(name) {
			return a
		}
	}
	return string(name)
}
