package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/webhook"
)

type recordingHandler struct {
	calls   int
	body    []byte
	rewound []byte
}

func (h *recordingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.calls++
	h.body, _ = io.ReadAll(r.Body)
	if r.GetBody != nil {
		rc, _ := r.GetBody()
		h.rewound, _ = io.ReadAll(rc)
	}
	w.WriteHeader(http.StatusNoContent)
}

// unsizedReader hides the length of its content, as a chunked body does.
type unsizedReader struct{ r io.Reader }

func (u unsizedReader) Read(p []byte) (int, error) { return u.r.Read(p) }

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestMiddleware(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	signer := mustSigner(t, vecSecret)
	v := mustVerifier(t, []string{vecSecret}, fixedClock(now))
	mw, err := webhook.NewMiddleware(v, webhook.WithMaxBodyBytes(64))
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"type":"ping"}`)
	big := bytes.Repeat([]byte("x"), 65)

	signed := func(body []byte) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(body))
		mustSetHeaders(t, signer, r.Header, "msg_1", time.Unix(now, 0), body)
		return r
	}
	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantBody   []byte // body seen by the handler; nil: handler not called
	}{
		{"valid", func() *http.Request { return signed(payload) }, http.StatusNoContent, payload},
		{"empty body", func() *http.Request {
			r := signed(nil)
			r.Body = http.NoBody
			return r
		}, http.StatusNoContent, []byte{}},
		{"exactly at the limit", func() *http.Request { return signed(big[:64]) }, http.StatusNoContent, big[:64]},
		{"forged", func() *http.Request {
			r := signed(payload)
			r.Header.Set("webhook-signature", "v1,"+strings.Repeat("A", 43)+"=")
			return r
		}, http.StatusUnauthorized, nil},
		{"tampered body", func() *http.Request {
			r := signed(payload)
			r.Body = io.NopCloser(strings.NewReader(`{"type":"pong"}`))
			return r
		}, http.StatusUnauthorized, nil},
		{"unsigned", func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(payload))
		}, http.StatusUnauthorized, nil},
		{"malformed signature header", func() *http.Request {
			r := signed(payload)
			r.Header.Set("webhook-signature", "v1,,,, ,v1a,%%%")
			return r
		}, http.StatusUnauthorized, nil},
		{"stale", func() *http.Request {
			r := signed(payload)
			r.Header.Set("webhook-timestamp", strconv.Itoa(now-3600))
			return r
		}, http.StatusUnauthorized, nil},
		{"too large by Content-Length", func() *http.Request { return signed(big) }, http.StatusRequestEntityTooLarge, nil},
		{"too large without Content-Length", func() *http.Request {
			r := signed(big)
			r.ContentLength = -1
			r.Body = io.NopCloser(unsizedReader{bytes.NewReader(big)})
			return r
		}, http.StatusRequestEntityTooLarge, nil},
		{"unreadable body", func() *http.Request {
			r := signed(payload)
			r.ContentLength = -1
			r.Body = io.NopCloser(failingReader{})
			return r
		}, http.StatusBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			next := &recordingHandler{}
			rec := httptest.NewRecorder()
			mw(next).ServeHTTP(rec, tt.req())
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantBody == nil {
				if next.calls != 0 {
					t.Fatalf("handler called %d times, want 0", next.calls)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q, want application/problem+json", ct)
				}
				var p struct {
					Type   string `json:"type"`
					Title  string `json:"title"`
					Status int    `json:"status"`
					Detail string `json:"detail"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
					t.Fatalf("problem body %q: %v", rec.Body, err)
				}
				if p.Status != tt.wantStatus || p.Title == "" || p.Detail == "" {
					t.Errorf("problem = %+v", p)
				}
				return
			}
			if next.calls != 1 {
				t.Fatalf("handler called %d times, want 1", next.calls)
			}
			if !bytes.Equal(next.body, tt.wantBody) || !bytes.Equal(next.rewound, tt.wantBody) {
				t.Errorf("handler read %q (GetBody %q), want %q", next.body, next.rewound, tt.wantBody)
			}
		})
	}
}

func TestNewMiddlewareRefusesBadConfig(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, []string{vecSecret})
	tests := []struct {
		name string
		v    webhook.RequestVerifier
		opts []webhook.Option
		want string
	}{
		{"nil verifier", nil, nil, "verifier"},
		{"nil *Verifier", (*webhook.Verifier)(nil), nil, "verifier"},
		{"nil *StripeVerifier", (*webhook.StripeVerifier)(nil), nil, "verifier"},
		{"nil option", v, []webhook.Option{nil}, "webhook: NewMiddleware: option 0 is nil"},
		{"verifier's option", v, []webhook.Option{webhook.WithTolerance(time.Minute)}, "webhook: NewMiddleware: WithTolerance applies to NewVerifier and NewStripeVerifier, not NewMiddleware"},
		{"zero body limit", v, []webhook.Option{webhook.WithMaxBodyBytes(0)}, "webhook: NewMiddleware: WithMaxBodyBytes: 0 must be positive"},
		{"nil logger", v, []webhook.Option{webhook.WithLogger(nil)}, "WithLogger"},
		{"nil meter provider", v, []webhook.Option{webhook.WithMeterProvider(nil)}, "WithMeterProvider"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := webhook.NewMiddleware(tt.v, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewMiddleware = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestMiddlewareProblemTypes: every refusal of the middleware is a problem
// body with a stable type URI that clients may branch on, like the
// idempotency middleware's, from the one shared writer (issue 12, item 13).
func TestMiddlewareProblemTypes(t *testing.T) {
	t.Parallel()
	const now = 1_700_000_000
	const base = "https://steadfast-go.github.io/problems/"
	signer := mustSigner(t, vecSecret)
	mw, err := webhook.NewMiddleware(mustVerifier(t, []string{vecSecret}, fixedClock(now)), webhook.WithMaxBodyBytes(16))
	if err != nil {
		t.Fatal(err)
	}
	next := &recordingHandler{}
	h := mw(next)
	signed := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader(body))
		mustSetHeaders(t, signer, r.Header, "msg_1", time.Unix(now, 0), []byte(body))
		return r
	}
	for _, tt := range []struct {
		name      string
		r         *http.Request
		status    int
		typ       string
		connClose bool
	}{
		{"forged", func() *http.Request { r := signed("{}"); r.Header.Set("webhook-signature", "v1,AAAA"); return r }(),
			http.StatusUnauthorized, base + "webhook-signature-invalid", false},
		{"unsigned", httptest.NewRequest(http.MethodPost, "/hooks", strings.NewReader("{}")),
			http.StatusUnauthorized, base + "webhook-signature-invalid", false},
		{"stale", func() *http.Request { r := signed("{}"); r.Header.Set("webhook-timestamp", "1"); return r }(),
			http.StatusUnauthorized, base + "webhook-signature-invalid", false},
		{"too large", signed(strings.Repeat("x", 17)), http.StatusRequestEntityTooLarge, base + "request-body-too-large", true},
		{"too large, undeclared", func() *http.Request {
			r := signed(strings.Repeat("x", 17))
			r.ContentLength = -1
			r.Body = io.NopCloser(unsizedReader{strings.NewReader(strings.Repeat("x", 17))})
			return r
		}(), http.StatusRequestEntityTooLarge, base + "request-body-too-large", true},
		{"unreadable", func() *http.Request {
			r := signed("{}")
			r.ContentLength = -1
			r.Body = io.NopCloser(failingReader{})
			return r
		}(), http.StatusBadRequest, base + "request-body-unreadable", false},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, tt.r)
		var p struct {
			Type   string `json:"type"`
			Title  string `json:"title"`
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("%s: problem body %q: %v", tt.name, rec.Body, err)
		}
		if rec.Code != tt.status || p.Status != tt.status || p.Type != tt.typ || p.Title == "" || p.Detail == "" {
			t.Errorf("%s: %d %+v, want %d type %s", tt.name, rec.Code, p, tt.status, tt.typ)
		}
		hdr := rec.Header()
		if hdr.Get("Content-Type") != "application/problem+json" || hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v, want application/problem+json and no-store", tt.name, hdr)
		}
		if got := hdr.Get("Connection") == "close"; got != tt.connClose {
			t.Errorf("%s: Connection: close = %v, want %v", tt.name, got, tt.connClose)
		}
	}
	if next.calls != 0 {
		t.Errorf("handler called %d times", next.calls)
	}
}
