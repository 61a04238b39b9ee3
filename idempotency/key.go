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

// MaxKeyLength is the longest key, in bytes, that the middleware accepts.
const MaxKeyLength = 255

// DefaultKeyHeader is the header the middleware reads the key from by
// default.
const DefaultKeyHeader = "Idempotency-Key"

// ParseKey returns the key carried by the values of an Idempotency-Key
// header field (as in r.Header.Values): a quoted value is a Structured Field
// string (RFC 8941), whose parameters are ignored; an unquoted value is an
// opaque key of visible ASCII, since clients send bare UUIDs, which are not
// valid Structured Field tokens. Surrounding spaces and tabs are ignored.
//
// It returns ErrKeyMissing if there is no value, and an error wrapping
// ErrKeyInvalid if there is more than one, or the value is empty, malformed
// or longer than MaxKeyLength.
func ParseKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", ErrKeyMissing
	case 1:
	default:
		return "", fmt.Errorf("%w: the header is given %d times", ErrKeyInvalid, len(values))
	}
	v := strings.Trim(values[0], " \t")
	if v == "" {
		return "", fmt.Errorf("%w: the key is empty", ErrKeyInvalid)
	}
	key := v
	if v[0] == '"' {
		item, err := httpsfv.UnmarshalItem([]string{v})
		if err != nil {
			return "", fmt.Errorf("%w: a quoted key must be a Structured Field string: %v", ErrKeyInvalid, err)
		}
		s, ok := item.Value.(string)
		if !ok {
			return "", fmt.Errorf("%w: a quoted key must be a Structured Field string", ErrKeyInvalid)
		}
		if s == "" {
			return "", fmt.Errorf("%w: the key is empty", ErrKeyInvalid)
		}
		key = s
	} else {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x21 || c > 0x7e {
				return "", fmt.Errorf("%w: byte %#02x at %d: an unquoted key must be visible ASCII", ErrKeyInvalid, c, i)
			}
		}
	}
	if len(key) > MaxKeyLength {
		return "", fmt.Errorf("%w: the key is %d bytes long, longer than %d", ErrKeyInvalid, len(key), MaxKeyLength)
	}
	return key, nil
}

// KeySource finds the key of a request. Key returns the key, ErrKeyMissing
// if the request has none, or an error wrapping ErrKeyInvalid if it has a
// bad one (the middleware answers 400 with the error's message, so the
// message should say what is wrong). body is the request body, read in full;
// Key must not modify or keep it. A KeySource must be safe for concurrent
// use.
type KeySource interface {
	Key(r *http.Request, body []byte) (string, error)
}

// KeyFunc adapts a function to KeySource.
type KeyFunc func(r *http.Request, body []byte) (string, error)

// Key calls f.
func (f KeyFunc) Key(r *http.Request, body []byte) (string, error) { return f(r, body) }

// HeaderKey returns a KeySource that reads the key from the header field
// name with the rules of ParseKey: HeaderKey("Idempotency-Key") is the
// default, HeaderKey("webhook-id") fits Standard Webhooks receivers.
func HeaderKey(name string) KeySource {
	return headerKey(http.CanonicalHeaderKey(name))
}

type headerKey string

func (h headerKey) Key(r *http.Request, _ []byte) (string, error) {
	k, err := ParseKey(r.Header[string(h)])
	switch {
	case errors.Is(err, ErrKeyMissing):
		return "", fmt.Errorf("no %s header: %w", string(h), err)
	case err != nil:
		return "", fmt.Errorf("%s header: %w", string(h), err)
	}
	return k, nil
}

// JSONFieldKey returns a KeySource that reads the key from a string field of
// a JSON object body, such as the "id" of a Stripe event. path names the
// field; dots separate the names of nested objects ("data.object.id"). A
// body that is not a JSON object, or a field that is absent, null or empty,
// is a missing key; a field that is not a string, or longer than
// MaxKeyLength, is an invalid one.
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
	return jsonFieldKey{path: path, names: names}, nil
}

type jsonFieldKey struct {
	path  string
	names []string
}

func (j jsonFieldKey) Key(_ *http.Request, body []byte) (string, error) {
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
		return "", fmt.Errorf("%w: JSON field %s is not a string", ErrKeyInvalid, j.path)
	}
	switch {
	case key == "":
		return "", fmt.Errorf("JSON field %s: %w", j.path, ErrKeyMissing)
	case len(key) > MaxKeyLength:
		return "", fmt.Errorf("%w: JSON field %s is %d bytes long, longer than %d", ErrKeyInvalid, j.path, len(key), MaxKeyLength)
	}
	return key, nil
}
