package idempotency_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/steadfast-go/steadfast/idempotency"
)

func TestParseKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		values  []string
		want    string
		wantErr error
	}{
		{"bare UUID", []string{"8e03978e-40d5-43e8-bc93-6894a57f9324"}, "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"quoted string", []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`}, "8e03978e-40d5-43e8-bc93-6894a57f9324", nil},
		{"quoted with space and escapes", []string{`"a b \"c\" \\"`}, `a b "c" \`, nil},
		{"quoted with parameters", []string{`"abc";v=1`}, "abc", nil},
		{"surrounding white space", []string{" \tabc\t "}, "abc", nil},
		{"unquoted visible ASCII", []string{"a,b;c=d/e:f"}, "a,b;c=d/e:f", nil},
		{"255 bytes", []string{strings.Repeat("k", 255)}, strings.Repeat("k", 255), nil},
		{"255 bytes quoted", []string{`"` + strings.Repeat("k", 255) + `"`}, strings.Repeat("k", 255), nil},
		{"missing", nil, "", idempotency.ErrKeyMissing},
		{"twice", []string{"a", "b"}, "", idempotency.ErrInvalid},
		{"twice the same", []string{"a", "a"}, "", idempotency.ErrInvalid},
		{"empty", []string{""}, "", idempotency.ErrInvalid},
		{"blank", []string{"  "}, "", idempotency.ErrInvalid},
		{"empty quoted", []string{`""`}, "", idempotency.ErrInvalid},
		{"256 bytes", []string{strings.Repeat("k", 256)}, "", idempotency.ErrInvalid},
		{"256 bytes quoted", []string{`"` + strings.Repeat("k", 256) + `"`}, "", idempotency.ErrInvalid},
		{"unterminated quote", []string{`"abc`}, "", idempotency.ErrInvalid},
		{"trailing garbage", []string{`"abc"x`}, "", idempotency.ErrInvalid},
		{"quoted list", []string{`"a", "b"`}, "", idempotency.ErrInvalid},
		{"bad escape", []string{`"a\x"`}, "", idempotency.ErrInvalid},
		{"non-ASCII quoted", []string{`"clé"`}, "", idempotency.ErrInvalid},
		{"non-ASCII bare", []string{"clé"}, "", idempotency.ErrInvalid},
		{"inner space bare", []string{"a b"}, "", idempotency.ErrInvalid},
		{"control byte", []string{"a\x01b"}, "", idempotency.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := idempotency.ParseKey(tt.values)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("ParseKey(%q) = %q, %v; want %q, %v", tt.values, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"abc", `"abc"`, `"a\"b"`, `"abc";p=1`, "", `"`, "8e03978e-40d5-43e8-bc93-6894a57f9324", "a\x00b", `"a", "b"`} {
		f.Add(s, "")
		f.Add(s, "second")
	}
	f.Fuzz(func(t *testing.T, v, second string) {
		values := []string{v}
		if second != "" {
			values = append(values, second)
		}
		key, err := idempotency.ParseKey(values)
		if err != nil {
			if key != "" {
				t.Fatalf("ParseKey(%q) returned key %q with error %v", values, key, err)
			}
			if !errors.Is(err, idempotency.ErrInvalid) {
				t.Fatalf("ParseKey(%q) error %v does not wrap ErrKeyInvalid", values, err)
			}
			return
		}
		if len(values) != 1 {
			t.Fatalf("ParseKey accepted %d values", len(values))
		}
		if key == "" || len(key) > idempotency.MaxKeyLength || !utf8.ValidString(key) {
			t.Fatalf("ParseKey(%q) = %q: empty, too long or not UTF-8", v, key)
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("ParseKey(%q) = %q: byte %#02x is not printable ASCII", v, key, c)
			}
		}
	})
}

func TestHeaderKey(t *testing.T) {
	t.Parallel()
	src := idempotency.HeaderKey("webhook-id")
	r := httptest.NewRequest(http.MethodPost, "/hooks", nil)
	if _, err := src(r, nil); !errors.Is(err, idempotency.ErrKeyMissing) {
		t.Fatalf("Key without the header: %v; want ErrKeyMissing", err)
	}
	r.Header.Set("Webhook-Id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
	if k, err := src(r, nil); err != nil || k != "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W" {
		t.Fatalf("Key = %q, %v", k, err)
	}
	r.Header.Add("Webhook-Id", "other")
	if _, err := src(r, nil); !errors.Is(err, idempotency.ErrInvalid) {
		t.Fatalf("Key with two headers: %v; want ErrKeyInvalid", err)
	}
}

func TestJSONFieldKey(t *testing.T) {
	t.Parallel()
	if _, err := idempotency.JSONFieldKey(""); err == nil {
		t.Fatal("JSONFieldKey(\"\") returned no error")
	}
	if _, err := idempotency.JSONFieldKey("data..id"); err == nil {
		t.Fatal("JSONFieldKey(\"data..id\") returned no error")
	}
	tests := []struct {
		path, body string
		want       string
		wantErr    error
	}{
		{"id", `{"id":"evt_1","type":"charge.succeeded"}`, "evt_1", nil},
		{"data.object.id", `{"data":{"object":{"id":"ch_9"}}}`, "ch_9", nil},
		{"id", `{"id":"ключ"}`, "ключ", nil},
		{"id", `{"type":"x"}`, "", idempotency.ErrKeyMissing},
		{"id", `{"id":null}`, "", idempotency.ErrKeyMissing},
		{"id", `{"id":""}`, "", idempotency.ErrKeyMissing},
		{"id", `not json`, "", idempotency.ErrKeyMissing},
		{"id", `["id"]`, "", idempotency.ErrKeyMissing},
		{"id", ``, "", idempotency.ErrKeyMissing},
		{"data.id", `{"data":"flat"}`, "", idempotency.ErrKeyMissing},
		{"id", `{"id":42}`, "", idempotency.ErrInvalid},
		{"id", `{"id":"` + strings.Repeat("k", 256) + `"}`, "", idempotency.ErrInvalid},
	}
	for _, tt := range tests {
		src, err := idempotency.JSONFieldKey(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := src(httptest.NewRequest(http.MethodPost, "/", nil), []byte(tt.body))
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("JSONFieldKey(%q).Key(%s) = %q, %v; want %q, %v", tt.path, tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}
