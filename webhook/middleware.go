package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RequestVerifier checks a request's headers against its raw body.
// *Verifier and *StripeVerifier implement it.
type RequestVerifier interface {
	Verify(h http.Header, payload []byte) error
}

var (
	_ RequestVerifier = (*Verifier)(nil)
	_ RequestVerifier = (*StripeVerifier)(nil)
)

// NewMiddleware returns middleware that lets a request through only when v
// verifies its headers against its raw body.
//
// The middleware reads the whole body, up to the limit of WithMaxBodyBytes,
// before the next handler or anything else parses it. It answers, with an
// RFC 9457 application/problem+json body and without calling next:
//
//   - 413 when the body (or its Content-Length) exceeds the limit;
//   - 400 when the body cannot be read;
//   - 401 when verification fails: missing or malformed headers, a timestamp
//     outside the tolerance, no matching signature.
//
// A verified request reaches next with its body intact and rewindable
// (Body, GetBody and ContentLength set from the bytes read). Put it in front
// of idempotency.Middleware keyed by the webhook-id header, so that a
// redelivered webhook runs its handler once and a forged one never does.
//
// Its options are WithMaxBodyBytes, WithLogger and WithMeterProvider. It
// returns an error when v is nil (or a nil *Verifier or *StripeVerifier), or
// naming the option when an option is invalid or does not apply to the
// middleware.
func NewMiddleware(v RequestVerifier, opts ...Option) (func(http.Handler) http.Handler, error) {
	if isNil(v) {
		return nil, errors.New("webhook: NewMiddleware: a verifier is required, not nil")
	}
	c := defaultConfig()
	if err := applyOptions(ctorMiddleware, &c, opts); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.meter == nil {
		c.meter = otel.GetMeterProvider()
	}
	counter, err := c.meter.Meter("github.com/steadfast-go/steadfast/webhook").Int64Counter(
		"steadfast.webhook.verifications",
		metric.WithDescription("Webhook requests checked by the verification middleware, by result."),
		metric.WithUnit("{request}"),
	)
	if err != nil {
		return nil, fmt.Errorf("webhook: NewMiddleware: creating metrics: %w", err)
	}
	m := &middleware{cfg: c, v: v, counter: counter, attrs: make(map[string]metric.AddOption, 4)}
	for _, r := range []string{"ok", "invalid", "too_large", "unreadable"} {
		m.attrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("result", r)))
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, next)
		})
	}, nil
}

// isNil reports whether v is nil, or a nil pointer in an interface.
func isNil(v RequestVerifier) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

type middleware struct {
	cfg     config
	v       RequestVerifier
	counter metric.Int64Counter
	attrs   map[string]metric.AddOption // by result; written once in NewMiddleware
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx := r.Context()
	if r.ContentLength > m.cfg.maxBody {
		m.refuse(ctx, w, r, "too_large", http.StatusRequestEntityTooLarge,
			fmt.Sprintf("The request body of %d bytes exceeds the limit of %d bytes.", r.ContentLength, m.cfg.maxBody), nil)
		return
	}
	body, err := m.readBody(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			m.refuse(ctx, w, r, "too_large", http.StatusRequestEntityTooLarge,
				fmt.Sprintf("The request body exceeds the limit of %d bytes.", m.cfg.maxBody), err)
			return
		}
		m.refuse(ctx, w, r, "unreadable", http.StatusBadRequest, "The request body could not be read.", err)
		return
	}
	if err := m.v.Verify(r.Header, body); err != nil {
		m.refuse(ctx, w, r, "invalid", http.StatusUnauthorized, "The webhook signature could not be verified: "+err.Error(), err)
		return
	}
	m.counter.Add(ctx, 1, m.attrs["ok"])
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	next.ServeHTTP(w, r)
}

// readBody reads at most maxBody bytes and reports a *http.MaxBytesError
// when there is more. A declared length (already checked against the limit)
// is read into a buffer of exactly that size.
func (m *middleware) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	defer r.Body.Close()
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, m.cfg.maxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > m.cfg.maxBody {
		return nil, &http.MaxBytesError{Limit: m.cfg.maxBody}
	}
	return buf, nil
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func (m *middleware) refuse(ctx context.Context, w http.ResponseWriter, r *http.Request, result string, status int, detail string, err error) {
	m.counter.Add(ctx, 1, m.attrs[result])
	m.cfg.logger.DebugContext(ctx, "webhook refused",
		slog.Int("status", status), slog.String("path", r.URL.Path), slog.Any("error", err))
	body, _ := json.Marshal(problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if status == http.StatusRequestEntityTooLarge {
		// The rest of the body was not read; do not reuse the connection.
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
