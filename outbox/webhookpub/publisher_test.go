package webhookpub_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/retry"
	"github.com/steadfast-go/steadfast/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// request is what the test endpoint saw.
type request struct {
	header http.Header
	body   []byte
}

// endpoint is a test server that answers with the statuses queued in
// answers (the last one repeats) and records every request.
type endpoint struct {
	mu       sync.Mutex
	answers  []func(w http.ResponseWriter)
	requests []request
	srv      *httptest.Server
}

func newEndpoint(t *testing.T, answers ...func(w http.ResponseWriter)) *endpoint {
	e := &endpoint{answers: answers}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.requests = append(e.requests, request{header: r.Header.Clone(), body: body})
		a := e.answers[0]
		if len(e.answers) > 1 {
			e.answers = e.answers[1:]
		}
		e.mu.Unlock()
		a(w)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) seen() []request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]request(nil), e.requests...)
}

func status(code int, headers ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, http.StatusText(code))
	}
}

// loopback lets the publisher reach the test servers.
var loopback = webhookpub.WithAllowedNetworks("127.0.0.0/8", "::1")

func newPublisher(t testing.TB, url string, opts ...webhookpub.Option) *webhookpub.Publisher {
	t.Helper()
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{"partner": {URL: url, Secrets: []string{secret}}}, append([]webhookpub.Option{loopback}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// clocked returns p on the clock now.
func clocked(p *webhookpub.Publisher, now func() time.Time) *webhookpub.Publisher {
	webhookpub.SetClock(p, now)
	return p
}

func delivery(id string) outbox.Delivery {
	return outbox.Delivery{
		Message: outbox.Message{ID: id, Topic: "partner", Payload: []byte(`{"n":1}`), Headers: map[string]string{"outbox-position": "7"}},
		Attempt: 1,
	}
}

func TestPublishOutcomes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name       string
		answer     func(http.ResponseWriter)
		wantNil    bool
		permanent  bool
		paused     bool
		retryAfter time.Duration // asked delay; 0: none asked
	}{
		{"200", status(200), true, false, false, 0},
		{"204", status(204), true, false, false, 0},
		{"503 with Retry-After seconds", status(503, "Retry-After", "120"), false, false, false, 120 * time.Second},
		{"429 with Retry-After date", status(429, "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), false, false, false, 90 * time.Second},
		{"503 without Retry-After", status(503), false, false, false, 0},
		{"500", status(500), false, false, false, 0},
		{"408", status(408), false, false, false, 0},
		{"410 pauses", status(410), false, false, true, time.Hour},
		{"409 with Retry-After (idempotency in progress)", status(409, "Retry-After", "1"), false, false, false, time.Second},
		{"409 without Retry-After is permanent", status(409), false, true, false, 0},
		{"400 is permanent", status(400), false, true, false, 0},
		{"404 is permanent", status(404), false, true, false, 0},
		{"302 is not followed, retried", status(302, "Location", "/elsewhere"), false, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ep := newEndpoint(t, tt.answer)
			p := clocked(newPublisher(t, ep.srv.URL, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(100))),
				func() time.Time { return now })
			err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000001"))
			if tt.wantNil {
				if err != nil {
					t.Fatalf("Publish = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Publish = nil, want an error")
			}
			if got := retry.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
			if got := errors.Is(err, outbox.ErrPaused); got != tt.paused {
				t.Errorf("errors.Is(%v, ErrPaused) = %v, want %v", err, got, tt.paused)
			}
			d, asked := retry.RetryAfter(err)
			if asked != (tt.retryAfter != 0) || d != tt.retryAfter {
				t.Errorf("RetryAfter(%v) = %v, %v; want %v", err, d, asked, tt.retryAfter)
			}
			var se *retry.StatusError
			if !errors.As(err, &se) {
				t.Errorf("error %v is not a *retry.StatusError", err)
			}
			if n := len(ep.seen()); n != 1 {
				t.Errorf("endpoint saw %d requests, want 1 (redirects must not be followed)", n)
			}
		})
	}
}

func TestEachAttemptSignedAfreshWithTheSameID(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(503), status(503), status(200))
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p := clocked(newPublisher(t, ep.srv.URL, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(100))), clock)
	d := delivery("0190f5e2-0000-7000-8000-000000000002")
	for attempt := 1; attempt <= 3; attempt++ {
		d.Attempt = attempt
		err := p.Publish(context.Background(), d)
		if (attempt < 3) != (err != nil) {
			t.Fatalf("attempt %d: Publish = %v", attempt, err)
		}
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
	}
	seen := ep.seen()
	if len(seen) != 3 {
		t.Fatalf("endpoint saw %d requests, want 3", len(seen))
	}
	v, err := webhook.NewVerifier([]string{secret}, webhook.WithClock(clock), webhook.WithTolerance(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	timestamps := map[string]bool{}
	for i, r := range seen {
		if got := r.header.Get("webhook-id"); got != d.ID {
			t.Errorf("request %d: webhook-id %q, want %q", i, got, d.ID)
		}
		if err := v.Verify(r.header, r.body); err != nil {
			t.Errorf("request %d: signature does not verify: %v", i, err)
		}
		timestamps[r.header.Get("webhook-timestamp")] = true
		if got := r.header.Get("Content-Type"); got != "application/json" {
			t.Errorf("request %d: Content-Type %q", i, got)
		}
		if got := r.header.Get("outbox-position"); got != "7" {
			t.Errorf("request %d: message header outbox-position = %q, want 7", i, got)
		}
	}
	if len(timestamps) != 3 {
		t.Errorf("timestamps %v: want a new one per attempt", timestamps)
	}
}

// TestResponseBodyCapped: of a failed answer's body, the error keeps the
// first 200 bytes, printable, and never a header.
func TestResponseBodyCapped(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 1<<20)
	ep := newEndpoint(t, func(w http.ResponseWriter) {
		w.Header().Set("X-Secret", "s3cr3t")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, big)
	})
	p := newPublisher(t, ep.srv.URL)
	err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000003"))
	var se *retry.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Publish = %v, want a *retry.StatusError", err)
	}
	if n := strings.Count(err.Error(), "x"); n != 200 {
		t.Errorf("kept %d bytes of the body, want 200", n)
	}
	if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "X-Secret") {
		t.Errorf("error %q holds a response header", err)
	}

	// A binary body comes out printable.
	ep = newEndpoint(t, func(w http.ResponseWriter) {
		w.WriteHeader(500)
		_, _ = w.Write([]byte("oops\r\n\x00\x1b[31m\xff\xfe"))
	})
	p = newPublisher(t, ep.srv.URL)
	err = p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000003"))
	for _, r := range err.Error() {
		if !strconv.IsPrint(r) {
			t.Fatalf("error %q holds the unprintable %U", err, r)
		}
	}
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	p := newPublisher(t, srv.URL, webhookpub.WithAttemptTimeout(50*time.Millisecond))
	err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000004"))
	if !errors.Is(err, retry.ErrAttemptTimeout) {
		t.Fatalf("Publish = %v, want ErrAttemptTimeout", err)
	}
	if retry.IsPermanent(err) || errors.Is(err, outbox.ErrPaused) {
		t.Errorf("a timeout must be retried: %v", err)
	}
}

func TestOpenBreakerPausesEndpoint(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(500))
	p := newPublisher(t, ep.srv.URL, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(2), breaker.WithOpenDuration(time.Hour)))
	d := delivery("0190f5e2-0000-7000-8000-000000000005")
	for i := 0; i < 2; i++ {
		if err := p.Publish(context.Background(), d); err == nil || errors.Is(err, outbox.ErrPaused) {
			t.Fatalf("publish %d: %v, want a plain retryable error", i, err)
		}
	}
	err := p.Publish(context.Background(), d)
	if !errors.Is(err, outbox.ErrPaused) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Publish with an open breaker = %v, want ErrPaused and ErrOpen", err)
	}
	if d, ok := retry.RetryAfter(err); !ok || d <= 0 || d > time.Hour {
		t.Errorf("pause = %v, %v; want the remaining open time", d, ok)
	}
	if n := len(ep.seen()); n != 2 {
		t.Errorf("endpoint saw %d requests, want 2 (none while open)", n)
	}
}

// While a half-open circuit waits for its probe, other messages are paused
// for one attempt's timeout (when the probe's answer is due), not for the
// relay's long default pause.
func TestHalfOpenBreakerPausesForOneAttempt(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ep := newEndpoint(t, status(500), func(w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	defer close(release)
	const attempt = 3 * time.Second
	p := newPublisher(t, ep.srv.URL, webhookpub.WithAttemptTimeout(attempt), webhookpub.WithBreaker(
		breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(30*time.Millisecond), breaker.WithHalfOpenProbes(1)))
	if err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000011")); err == nil {
		t.Fatal("first publish succeeded; want the 500 to open the circuit")
	}
	time.Sleep(60 * time.Millisecond) // gobreaker keeps its own clock
	probe := make(chan error, 1)
	go func() { probe <- p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000012")) }()
	for len(ep.seen()) < 2 {
		time.Sleep(time.Millisecond)
	}
	err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000013"))
	if !errors.Is(err, outbox.ErrPaused) {
		t.Fatalf("publish while the probe is out = %v, want ErrPaused", err)
	}
	if d, ok := retry.RetryAfter(err); !ok || d != attempt {
		t.Errorf("pause = %v, %v; want one attempt's timeout (%v)", d, ok, attempt)
	}
	release <- struct{}{}
	if err := <-probe; err != nil {
		t.Errorf("probe: %v", err)
	}
}

func TestClientErrorsDoNotTripBreaker(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(422))
	p := newPublisher(t, ep.srv.URL, webhookpub.WithBreaker(breaker.WithConsecutiveFailures(1)))
	for i := 0; i < 3; i++ {
		if err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000006")); !retry.IsPermanent(err) {
			t.Fatalf("publish %d = %v, want permanent", i, err)
		}
	}
	if n := len(ep.seen()); n != 3 {
		t.Errorf("endpoint saw %d requests, want 3", n)
	}
}

func TestUnknownTopicIsPermanent(t *testing.T) {
	t.Parallel()
	p := newPublisher(t, "http://127.0.0.1:1/")
	d := delivery("0190f5e2-0000-7000-8000-000000000007")
	d.Topic = "nobody"
	err := p.Publish(context.Background(), d)
	if !errors.Is(err, webhookpub.ErrUnknownEndpoint) || !retry.IsPermanent(err) {
		t.Fatalf("Publish = %v, want permanent ErrUnknownEndpoint", err)
	}
}

func TestIDThatCannotBeAHeaderIsPermanent(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	p := newPublisher(t, ep.srv.URL)
	err := p.Publish(context.Background(), delivery("id with spaces\n"))
	if !retry.IsPermanent(err) {
		t.Fatalf("Publish = %v, want permanent", err)
	}
	if n := len(ep.seen()); n != 0 {
		t.Errorf("endpoint saw %d requests, want 0", n)
	}
}

func TestConnectionRefusedIsRetried(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	p := newPublisher(t, url)
	err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-000000000008"))
	if err == nil || retry.IsPermanent(err) || errors.Is(err, outbox.ErrPaused) {
		t.Fatalf("Publish to a closed port = %v, want a retryable error", err)
	}
}

func TestNewRefusesMisconfiguration(t *testing.T) {
	t.Parallel()
	ok := webhookpub.Endpoint{URL: "https://partner.example/hooks", Secrets: []string{secret}}
	tests := []struct {
		name      string
		endpoints map[string]webhookpub.Endpoint
		opts      []webhookpub.Option
		want      string
	}{
		{"no endpoints", nil, nil, "no endpoint"},
		{"no URL", map[string]webhookpub.Endpoint{"a": {Secrets: []string{secret}}}, nil, `"a"`},
		{"relative URL", map[string]webhookpub.Endpoint{"a": {URL: "/hooks", Secrets: []string{secret}}}, nil, "absolute"},
		{"ftp URL", map[string]webhookpub.Endpoint{"a": {URL: "ftp://x/y", Secrets: []string{secret}}}, nil, "http"},
		{"no secret", map[string]webhookpub.Endpoint{"a": {URL: "https://x/"}}, nil, "secret"},
		{"empty secret", map[string]webhookpub.Endpoint{"a": {URL: "https://x/", Secrets: []string{""}}}, nil, "secret"},
		{"empty destination", map[string]webhookpub.Endpoint{"": ok}, nil, "empty destination"},
		{"zero timeout", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithAttemptTimeout(0)}, "WithAttemptTimeout"},
		{"nil client", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithUnguardedClient(nil)}, "WithUnguardedClient"},
		{"nil option", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{nil}, "webhookpub: New: option 0 is nil"},
		{"nil logger", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithLogger(nil)}, "WithLogger"},
		{"nil resolver", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithResolver(nil)}, "WithResolver"},
		{"nil breaker option", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithBreaker(nil)}, "WithBreaker"},
		{"bad network", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithAllowedNetworks("10.0.0.0/33")}, "WithAllowedNetworks"},
		{"allowed networks with an unguarded client", map[string]webhookpub.Endpoint{"a": ok},
			[]webhookpub.Option{webhookpub.WithUnguardedClient(http.DefaultClient), webhookpub.WithAllowedNetworks("10.0.0.0/8")}, "WithAllowedNetworks has no effect with WithUnguardedClient"},
		{"cache without resolver", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithResolverCache(10, time.Minute)}, "WithResolverCache needs WithResolver"},
		{"zero cache", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithResolverCache(0, time.Minute)}, "WithResolverCache"},
		{"short secret", map[string]webhookpub.Endpoint{"a": {URL: "https://x/", Secrets: []string{"whsec_c2hvcnQ="}}}, nil, "24 bytes"},
		{"malformed endpoint header", map[string]webhookpub.Endpoint{"a": {URL: "https://x/", Secrets: []string{secret}, Headers: map[string]string{"X Bad": "v"}}}, nil, `"a"`},
		{"internal literal address", map[string]webhookpub.Endpoint{"a": {URL: "http://169.254.169.254/latest", Secrets: []string{secret}}}, nil, "not globally reachable"},
		{"zero gone pause", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithGonePause(0)}, "WithGonePause"},
		{"bad breaker option", map[string]webhookpub.Endpoint{"a": ok}, []webhookpub.Option{webhookpub.WithBreaker(breaker.WithConsecutiveFailures(0))}, "WithBreaker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := webhookpub.New(tt.endpoints, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestUserHeadersAndUserAgent(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{"partner": {
		URL: ep.srv.URL, Secrets: []string{secret}, Headers: map[string]string{"X-Tenant": "acme", "User-Agent": "acme-sender/2"},
	}}, loopback)
	if err != nil {
		t.Fatal(err)
	}
	d := delivery("0190f5e2-0000-7000-8000-000000000009")
	d.Headers["Content-Type"] = "application/cloudevents+json"
	if err := p.Publish(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	h := ep.seen()[0].header
	for k, want := range map[string]string{"X-Tenant": "acme", "User-Agent": "acme-sender/2", "Content-Type": "application/cloudevents+json", "Webhook-Id": d.ID} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if _, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64); err != nil {
		t.Errorf("webhook-timestamp %q: %v", h.Get("webhook-timestamp"), err)
	}
}

// TestCloseReleasesConnections: Close closes the idle connections of the
// publisher's own transport, and later publishes fail with ErrClosed, a
// transient error (the relay keeps the message for later), as rabbitpub's
// and kafkapub's do.
func TestCloseReleasesConnections(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}
	srv.Start()
	defer srv.Close()
	p := newPublisher(t, srv.URL)
	if err := p.Publish(context.Background(), delivery("m1")); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection is still open after Close")
	}
	err := p.Publish(context.Background(), delivery("m2"))
	if !errors.Is(err, webhookpub.ErrClosed) || retry.IsPermanent(err) {
		t.Errorf("Publish after Close = %v, want a transient ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
