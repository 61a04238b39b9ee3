package httpx_test

import (
	"bufio"
	"net/textproto"
	"strings"
	"testing"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

func TestCheckField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
		want        string // "" when valid, else a part of the error
	}{
		{"Content-Type", "application/json", ""},
		{"x-a", "", ""},
		{"X-A", "a b\tc", ""},
		{"X-A", "café ☕", ""},
		{"X-A", "caf\xe9", ""}, // obs-text is a field value
		{"X-A", "\x80\xff", ""},
		{"X-A", "!~", ""},
		{"!#$%&'*+-.^_`|~09azAZ", "v", ""},
		{"", "v", "empty header name"},
		{"X A", "v", "not an HTTP token"},
		{"X-A:", "v", "not an HTTP token"},
		{"X(A)", "v", "not an HTTP token"},
		{"X\"A", "v", "not an HTTP token"},
		{"X-Ü", "v", "not an HTTP token"},
		{"X-A\r\nX-B", "v", "not an HTTP token"},
		{"X\x00", "v", "not an HTTP token"},
		{"X-A", "a\r\nX-Injected: 1", "control byte 0x0d at offset 1"},
		{"X-A", "a\nb", "control byte 0x0a at offset 1"},
		{"X-A", "a\rb", "control byte 0x0d"},
		{"X-A", "a\x00b", "control byte 0x00"},
		{"X-A", "\x01", "control byte 0x01 at offset 0"},
		{"X-A", "a\x1fb", "control byte 0x1f"},
		{"X-A", "a\x7fb", "control byte 0x7f"},
		{"X-A", " a", "begins or ends with a space or tab"},
		{"X-A", "a ", "begins or ends with a space or tab"},
		{"X-A", "\ta", "begins or ends with a space or tab"},
		{"X-A", "a\t", "begins or ends with a space or tab"},
		{"X-A", " ", "begins or ends with a space or tab"},
	}
	for _, tt := range tests {
		err := httpx.CheckField(tt.name, tt.value)
		valid := httpx.ValidFieldName(tt.name) && httpx.ValidFieldValue(tt.value)
		switch {
		case tt.want == "" && (err != nil || !valid):
			t.Errorf("CheckField(%q, %q) = %v, valid %v; want nil, valid", tt.name, tt.value, err, valid)
		case tt.want != "" && (err == nil || valid):
			t.Errorf("CheckField(%q, %q) = nil or valid %v; want an error with %q", tt.name, tt.value, valid, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), tt.want):
			t.Errorf("CheckField(%q, %q) = %q; want it to say %q", tt.name, tt.value, err, tt.want)
		}
	}
}

func TestCheckFieldQuotesLittle(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", 1000)
	if err := httpx.CheckField(long+" ", "v"); err == nil || len(err.Error()) > 200 {
		t.Errorf("a long bad name: %v (%d bytes)", err, len(err.Error()))
	}
	secret := "Bearer s3cret"
	if err := httpx.CheckField("Authorization", secret+"\n"); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("a bad value: %v; want an error that does not quote the value", err)
	}
}

// FuzzCheckField checks the validator against a plain reading of RFC 9110's
// grammar, and that what it accepts is read back unchanged by an HTTP/1.1
// header parser.
func FuzzCheckField(f *testing.F) {
	for _, s := range [][2]string{
		{"Content-Type", "application/json"}, {"X-A", ""}, {"X-A", "a b\tc"}, {"X A", "v"},
		{"X-A", "a\r\nX-B: 1"}, {"X-A", " a"}, {"X-A", "caf\xe9"}, {"", ""}, {"X-A", "a\x7f"},
	} {
		f.Add(s[0], s[1])
	}
	const tchars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	f.Fuzz(func(t *testing.T, name, value string) {
		wantName := name != "" && strings.Trim(name, tchars) == ""
		wantValue := !strings.ContainsFunc(value, func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) &&
			strings.Trim(value, " \t") == value
		if got := httpx.ValidFieldName(name); got != wantName {
			t.Fatalf("ValidFieldName(%q) = %v, want %v", name, got, wantName)
		}
		if got := httpx.ValidFieldValue(value); got != wantValue {
			t.Fatalf("ValidFieldValue(%q) = %v, want %v", value, got, wantValue)
		}
		err := httpx.CheckField(name, value)
		if (err == nil) != (wantName && wantValue) {
			t.Fatalf("CheckField(%q, %q) = %v, want valid %v", name, value, err, wantName && wantValue)
		}
		if err != nil {
			return
		}
		r := textproto.NewReader(bufio.NewReader(strings.NewReader(name + ": " + value + "\r\n\r\n")))
		h, rerr := r.ReadMIMEHeader()
		key := textproto.CanonicalMIMEHeaderKey(name)
		if rerr != nil || len(h) != 1 || len(h[key]) != 1 || h[key][0] != value {
			t.Fatalf("%q: %q read back as %q (%v)", name, value, h, rerr)
		}
	})
}
