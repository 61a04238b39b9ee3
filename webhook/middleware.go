package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/httpx"
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
// before the next handler or anything else parses it. It answers, without
// calling next, with an RFC 9457 application/problem+json body (marked
// Cache-Control: no-store) whose type is a stable URI that clients may
// branch on, the same as the idempotency middleware's for the body:
//
//   - 413 https://steadfast-go.github.io/problems/request-body-too-large
//     when the body (or its Content-Length) exceeds the limit (with
//     Connection: close, since the rest is not read);
//   - 400 https://steadfast-go.github.io/problems/request-body-unreadable
//     when the body cannot be read;
//   - 401 https://steadfast-go.github.io/problems/webhook-signature-invalid
//     when verification fails: missing or malformed headers, a timestamp
//     outside the tolerance, no matching signature. The detail says which.
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
		m.attrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("webhook.outcome", r)))
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

// problemSignatureInvalid is the type of the 401 answer.
const problemSignatureInvalid = "https://steadfast-go.github.io/problems/webhook-signature-invalid"

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx := r.Context()
	body, err := httpx.ReadBody(r, m.cfg.maxBody, nil)
	if err != nil {
		p := httpx.BodyProblem(err, m.cfg.maxBody)
		result := "unreadable"
		if p.Status == http.StatusRequestEntityTooLarge {
			result = "too_large"
			// The rest of the body was not read; do not reuse the connection.
			w.Header().Set("Connection", "close")
		}
		m.refuse(ctx, w, r, result, p, err)
		return
	}
	if body == nil {
		body = []byte{}
	}
	if err := m.v.Verify(r.Header, body); err != nil {
		m.refuse(ctx, w, r, "invalid", httpx.Problem{
			Type:   problemSignatureInvalid,
			Title:  "Webhook signature invalid",
			Status: http.StatusUnauthorized,
			Detail: "The webhook signature could not be verified: " + err.Error(),
		}, err)
		return
	}
	m.counter.Add(ctx, 1, m.attrs["ok"])
	rd := &httpx.BodyReader{}
	rd.Reset(body)
	r.Body = rd
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) {
		rd := &httpx.BodyReader{}
		rd.Reset(body)
		return rd, nil
	}
	next.ServeHTTP(w, r)
}

func (m *middleware) refuse(ctx context.Context, w http.ResponseWriter, r *http.Request, result string, p httpx.Problem, err error) {
	m.counter.Add(ctx, 1, m.attrs[result])
	m.cfg.logger.DebugContext(ctx, "webhook refused",
		slog.Int("status", p.Status), slog.String("path", r.URL.Path), slog.Any("error", err))
	httpx.WriteProblem(w, p)
}
