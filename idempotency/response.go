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
	kind := kindResponse
	if len(body) > maxBody {
		kind, body = kindTooLarge, nil
	}
	size := 1 + binary.MaxVarintLen64*2 + len(body)
	n := 0
	for _, name := range allowed {
		if vs := h[name]; len(vs) > 0 {
			n++
			size += 2*binary.MaxVarintLen64 + len(name)
			for _, v := range vs {
				size += binary.MaxVarintLen64 + len(v)
			}
		}
	}
	b = slices.Grow(b, size)
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(status))
	b = binary.AppendUvarint(b, uint64(n))
	for _, name := range allowed {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, body...)
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
// (and spare more, handed back in storedResponse.spare)
// and one string for their bytes, unless every value is a common one
// (commonValue). On error, hdr is as it was.
func decodeResponse(b []byte, allowed []string, hdr http.Header, spare int) (storedResponse, error) {
	var r storedResponse
	if len(b) == 0 || (b[0] != kindResponse && b[0] != kindTooLarge) {
		return r, errCorrupt
	}
	r.tooLarge = b[0] == kindTooLarge
	d := decoder{b: b[1:]}
	status, ok := d.uvarint()
	if !ok || status < 200 || status > 999 {
		return r, errCorrupt
	}
	r.status = int(status)
	fields := d
	// First pass: check the fields, count their values and bytes.
	n, ok := d.uvarint()
	if !ok || n > uint64(len(d.b)) {
		return r, errCorrupt
	}
	nvalues, nbytes := 0, 0
	for range n {
		if _, ok := d.bytes(); !ok {
			return r, errCorrupt
		}
		nv, ok := d.uvarint()
		if !ok || nv == 0 || nv > uint64(len(d.b)) {
			return r, errCorrupt
		}
		for range nv {
			v, ok := d.bytes()
			if !ok {
				return r, errCorrupt
			}
			if _, ok := commonValue(v); !ok {
				nbytes += len(v)
			}
		}
		nvalues += int(nv)
	}
	r.body = d.b
	// Second pass: the fields are known to be well formed.
	vs := make([]string, nvalues+spare)
	var buf strings.Builder
	if nbytes > 0 {
		buf.Grow(nbytes)
	}
	d = fields
	d.uvarint()
	vi := 0
	for range n {
		raw, _ := d.bytes()
		name := internName(raw, allowed)
		nv, _ := d.uvarint()
		first := vi
		for range nv {
			v, _ := d.bytes()
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

// decoder reads the fields of a stored response.
type decoder struct{ b []byte }

func (d *decoder) uvarint() (uint64, bool) {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		// One byte: the lengths and counts of nearly every response.
		v := d.b[0]
		d.b = d.b[1:]
		return uint64(v), true
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

// bytes reads a uvarint length and that many bytes.
func (d *decoder) bytes() ([]byte, bool) {
	l, ok := d.uvarint()
	if !ok || l > uint64(len(d.b)) {
		return nil, false
	}
	s := d.b[:l]
	d.b = d.b[l:]
	return s, true
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
