package httpx

import (
	"errors"
	"fmt"
)

// ValidFieldName reports whether name can be the name of an HTTP field (a
// header): a token of RFC 9110 (sections 5.1 and 5.6.2), one or more of the
// ASCII letters, digits and !#$%&'*+-.^_`|~.
func ValidFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTchar(name[i]) {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether value can be sent as an HTTP field value
// as RFC 9110 (section 5.5) defines it: no control byte (CR, LF, NUL, the
// others below 0x20, DEL) except HTAB, and no space or tab at either end (a
// recipient strips those, so the value would arrive altered). The empty
// value is valid, and so are bytes 0x80-0xFF (obs-text): callers that keep
// values as text check UTF-8 themselves.
func ValidFieldValue(value string) bool {
	return badValueByte(value) < 0 && !paddedValue(value)
}

// CheckField returns nil when name: value can be sent as an HTTP field (see
// ValidFieldName and ValidFieldValue), else an error that says why in words
// a caller prefixes with its package and the header's origin. The error
// quotes at most 40 bytes of a name and none of a value.
func CheckField(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	if !ValidFieldName(name) {
		return fmt.Errorf("header name %.40q is not an HTTP token (RFC 9110: letters, digits and !#$%%&'*+-.^_`|~)", name)
	}
	if i := badValueByte(value); i >= 0 {
		return fmt.Errorf("header %.40s: value has the control byte 0x%02x at offset %d (RFC 9110 field values have none but tab)", name, value[i], i)
	}
	if paddedValue(value) {
		return fmt.Errorf("header %.40s: value begins or ends with a space or tab (RFC 9110 field values do not)", name)
	}
	return nil
}

// isTchar reports whether c is a tchar of RFC 9110, section 5.6.2.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// badValueByte returns the offset of the first control byte other than HTAB
// in v (DEL included), or -1.
func badValueByte(v string) int {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return i
		}
	}
	return -1
}

// paddedValue reports whether v begins or ends with a space or tab.
func paddedValue(v string) bool {
	if v == "" {
		return false
	}
	first, last := v[0], v[len(v)-1]
	return first == ' ' || first == '\t' || last == ' ' || last == '\t'
}
