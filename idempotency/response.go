package idempotency

import (
	"encoding/binary"
	"errors"
	"net/http"
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

// encodeResponse encodes a response for the store, keeping only the header
// fields named in allowed (canonical names). A body over maxBody is replaced
// by a marker.
func encodeResponse(status int, h http.Header, allowed []string, body []byte, maxBody int) []byte {
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
	b := make([]byte, 0, size)
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
}

// decodeResponse decodes a stored response, adding its header fields to
// hdr, except those that must never be replayed. Header names are taken
// from allowed where they match, to save copying them; the body aliases b.
// On error, hdr may hold some of the fields.
func decodeResponse(b []byte, allowed []string, hdr http.Header) (storedResponse, error) {
	var r storedResponse
	if len(b) == 0 || (b[0] != kindResponse && b[0] != kindTooLarge) {
		return r, errCorrupt
	}
	r.tooLarge = b[0] == kindTooLarge
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	bytesOf := func() ([]byte, bool) {
		l, ok := next()
		if !ok || l > uint64(len(b)) {
			return nil, false
		}
		s := b[:l]
		b = b[l:]
		return s, true
	}
	status, ok := next()
	if !ok || status < 200 || status > 999 {
		return r, errCorrupt
	}
	r.status = int(status)
	n, ok := next()
	if !ok || n > uint64(len(b)) {
		return r, errCorrupt
	}
	for range n {
		raw, ok := bytesOf()
		if !ok {
			return r, errCorrupt
		}
		name := internName(raw, allowed)
		nv, ok := next()
		if !ok || nv == 0 || nv > uint64(len(b)) {
			return r, errCorrupt
		}
		vs := make([]string, nv)
		for j := range vs {
			v, ok := bytesOf()
			if !ok {
				return r, errCorrupt
			}
			vs[j] = string(v)
		}
		if !neverStored(name) {
			hdr[name] = vs
		}
	}
	r.body = b
	return r, nil
}

func internName(name []byte, allowed []string) string {
	for _, a := range allowed {
		if a == string(name) {
			return a
		}
	}
	return string(name)
}
