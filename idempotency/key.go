package idempotency

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/dunglas/httpsfv"
)

// maxKeyLength is the longest key, in bytes, that the middleware accepts.
const maxKeyLength = 255

// DefaultKeyHeader is the header the middleware reads the key from by
// default.
const DefaultKeyHeader = "Idempotency-Key"

// parseKey returns the key carried by the values of an Idempotency-Key
// header field (as in r.Header.Values): a quoted value is a Structured Field
// string (RFC 8941), whose parameters are ignored; an unquoted value is an
// opaque key of visible ASCII, since clients send bare UUIDs, which are not
// valid Structured Field tokens. Surrounding spaces and tabs are ignored.
//
// It returns ErrKeyMissing if there is no value, and an error wrapping
// ErrInvalid if there is more than one, or the value is empty, malformed
// or longer than maxKeyLength.
func parseKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", ErrKeyMissing
	case 1:
	default:
		return "", fmt.Errorf("%w: the header is given %d times", ErrInvalid, len(values))
	}
	v := strings.Trim(values[0], " \t")
	if v == "" {
		return "", fmt.Errorf("%w: the key is empty", ErrInvalid)
	}
	key := v
	if v[0] == '"' {
		item, err := httpsfv.UnmarshalItem([]string{v})
		if err != nil {
			return "", fmt.Errorf("%w: a quoted key must be a Structured Field string: %v", ErrInvalid, err)
		}
		s, ok := item.Value.(string)
		if !ok {
			return "", fmt.Errorf("%w: a quoted key must be a Structured Field string", ErrInvalid)
		}
		if s == "" {
			return "", fmt.Errorf("%w: the key is empty", ErrInvalid)
		}
		key = s
	} else {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x21 || c > 0x7e {
				return "", fmt.Errorf("%w: byte %#02x at %d: an unquoted key must be visible ASCII", ErrInvalid, c, i)
			}
		}
	}
	if len(key) > maxKeyLength {
		return "", fmt.Errorf("%w: the key is %d bytes long, longer than %d", ErrInvalid, len(key), maxKeyLength)
	}
	return key, nil
}

// KeySource finds the key of a request: it returns the key, ErrKeyMissing
// if the request has none, or an error wrapping ErrInvalid if it has a bad
// one (the middleware answers 400 with the error's message, so the message
// should say what is wrong). A key is at most 255 bytes: the middleware
// refuses a longer one. body is the request body, read in full; a KeySource
// must not modify or keep it. It must be safe for concurrent use.
type KeySource func(r *http.Request, body []byte) (string, error)

// HeaderKey returns a KeySource that reads the key from the header field
// name: HeaderKey(DefaultKeyHeader) is the default, HeaderKey("webhook-id")
// fits Standard Webhooks receivers. A quoted value is a Structured Field
// string (RFC 8941), whose parameters are ignored; an unquoted value is an
// opaque key of visible ASCII, since clients send bare UUIDs, which are not
// valid Structured Field tokens. Surrounding spaces and tabs are ignored.
// A field given more than once, or an empty, malformed or longer than 255
// bytes value, is an invalid key.
func HeaderKey(name string) KeySource {
	h := http.CanonicalHeaderKey(name)
	return func(r *http.Request, _ []byte) (string, error) { return headerKey(h, r) }
}

func headerKey(h string, r *http.Request) (string, error) {
	k, err := parseKey(r.Header[h])
	switch {
	case errors.Is(err, ErrKeyMissing):
		return "", fmt.Errorf("no %s header: %w", h, err)
	case err != nil:
		return "", fmt.Errorf("%s header: %w", h, err)
	}
	return k, nil
}

// JSONFieldKey returns a KeySource that reads the key from a string field of
// a JSON object body, such as the "id" of a Stripe event. path names the
// field; dots separate the names of nested objects ("data.object.id"). A
// body that is not a JSON object, or a field that is absent, null or empty,
// is a missing key; a field that is not a string, or longer than 255 bytes,
// is an invalid one. It returns an error for an empty path or one with an
// empty name.
func JSONFieldKey(path string) (KeySource, error) {
	if path == "" {
		return nil, errors.New("idempotency: JSONFieldKey: empty path")
	}
	names := strings.Split(path, ".")
	for _, n := range names {
		if n == "" {
			return nil, fmt.Errorf("idempotency: JSONFieldKey: path %q has an empty name", path)
		}
	}
	return jsonFieldKey{path: path, names: names}.key, nil
}

type jsonFieldKey struct {
	path  string
	names []string
}

func (j jsonFieldKey) key(_ *http.Request, body []byte) (string, error) {
	raw := json.RawMessage(body)
	for _, name := range j.names {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return "", fmt.Errorf("JSON field %s: %w", j.path, ErrKeyMissing)
		}
		var ok bool
		if raw, ok = obj[name]; !ok {
			return "", fmt.Errorf("JSON field %s: %w", j.path, ErrKeyMissing)
		}
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", fmt.Errorf("JSON field %s: %w", j.path, ErrKeyMissing)
	}
	var key string
	if err := json.Unmarshal(raw, &key); err != nil {
		return "", fmt.Errorf("%w: JSON field %s is not a string", ErrInvalid, j.path)
	}
	switch {
	case key == "":
		return "", fmt.Errorf("JSON field %s: %w", j.path, ErrKeyMissing)
	case len(key) > maxKeyLength:
		return "", fmt.Errorf("%w: JSON field %s is %d bytes long, longer than %d", ErrInvalid, j.path, len(key), maxKeyLength)
	}
	return key, nil
}
