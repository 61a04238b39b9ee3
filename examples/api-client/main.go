// Command api-client calls a flaky HTTP API through an http.Client made
// resilient by steadfast: retries with a budget and a per-attempt timeout,
// a circuit breaker, and idempotency keys that make a retried POST safe.
//
// It starts the flaky API itself (a loopback httptest server that honours the
// Idempotency-Key header with idempotency.Middleware) and plays two scenes:
//
//   - one POST whose attempts meet a 503, a response lost after the write
//     was done (502 from a proxy), and a hang; the client's fourth attempt
//     gets the stored response, and the server performed the write once;
//   - an outage: the breaker opens after four failures in a row, the
//     retry loop gives up at once rather than wait past the caller's
//     deadline, the next call fails fast without reaching the server, and
//     once the open period is over a probe closes the breaker again.
//
// It needs no server and exits in about two seconds:
//
//	go run ./examples/api-client
//
// # Composition
//
// Outermost first:
//
//	caller's context (overall deadline)
//	  → retry.Transport (attempts, backoff, budget, per-attempt timeout, idempotency keys)
//	    → breaker.Transport (one breaker per host)
//	      → http.Transport (connections)
//
// Retry sits outside the breaker so that the breaker counts every attempt,
// including one cut off by the per-attempt timeout (a failure), but not the
// caller giving up (context.Canceled: not counted, not retried). When the
// breaker is open its error carries the remaining open time; retry waits it
// out if it fits before the deadline, and gives up at once otherwise.
// The other order (breaker outside retry) would count one failure per
// exhausted retry loop, and would go on retrying into an open circuit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/retry"
)

func main() {
	var cfg config
	flag.DurationVar(&cfg.openFor, "open", time.Second, "how long the breaker stays open")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "api-client:", err)
		os.Exit(1)
	}
}

type config struct {
	openFor time.Duration // breaker open duration; 1 s when zero
}

// summary is what run observed, for its test.
type summary struct {
	Writes          int // payments the API performed
	ServerRequests  int // requests that reached the API
	BreakerOpenings int
}

// newClient composes the client: caller's deadline → retry → breaker → base.
func newClient(base http.RoundTripper, openFor time.Duration, out io.Writer, onState func(breaker.Transition)) (*http.Client, error) {
	// The breaker sees every attempt. Four failures in a row open it for
	// openFor; then one probe decides. 5xx responses, transport errors and
	// attempt timeouts are failures; 4xx and the caller's cancellation are not.
	brk, err := breaker.NewTransport(base,
		breaker.WithConsecutiveFailures(4),
		breaker.WithOpenDuration(openFor),
		breaker.WithStateHook(onState),
		// The hook prints the transitions here; a service keeps the default
		// logger (slog.Default()), which logs one line per transition.
		breaker.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		return nil, err
	}
	// Up to 6 attempts, 200 ms each, full-jitter backoff from 20 ms; retries
	// limited by the default budget (20% of recent requests plus 10).
	policy, err := retry.New(
		retry.WithMaxAttempts(6),
		retry.WithAttemptTimeout(200*time.Millisecond),
		retry.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		retry.WithOnRetry(func(_ context.Context, attempt int, err error, wait time.Duration) {
			fmt.Fprintf(out, "  client: attempt %d failed (%s), retrying in %v\n", attempt, short(err), wait.Round(time.Millisecond))
		}),
	)
	if err != nil {
		return nil, err
	}
	// A POST is retried only with an idempotency key: the Transport adds one,
	// the same on every attempt of the call, so the API does the write once.
	rt, err := retry.NewTransport(brk, policy, retry.WithAutoIdempotencyKey())
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt}, nil
}

func run(ctx context.Context, cfg config, out io.Writer) (summary, error) {
	if cfg.openFor <= 0 {
		cfg.openFor = time.Second
	}
	out = &syncWriter{w: out} // the API's handlers print too
	api, err := newFlakyAPI(out)
	if err != nil {
		return summary{}, err
	}
	srv := httptest.NewServer(api)
	defer srv.Close()

	var (
		mu       sync.Mutex
		openings int
	)
	onState := func(tr breaker.Transition) {
		fmt.Fprintf(out, "  breaker %s: %s → %s\n", tr.Name, tr.From, tr.To)
		if tr.To == breaker.Open {
			mu.Lock()
			openings++
			mu.Unlock()
		}
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	client, err := newClient(base, cfg.openFor, out, onState)
	if err != nil {
		return summary{}, err
	}

	// Scene 1: one POST through a 503, a lost response and a hang.
	fmt.Fprintln(out, "POST /payments while the API is flaky:")
	status, body, err := post(ctx, client, srv.URL+"/payments", 3*time.Second)
	if err != nil {
		return summary{}, fmt.Errorf("flaky POST: %w", err)
	}
	fmt.Fprintf(out, "  => %d %s, writes performed by the API: %d\n", status, body, api.writes())

	// Scene 2: an outage.
	api.set(down)
	fmt.Fprintln(out, "POST /payments during an outage:")
	start := time.Now()
	// The deadline is shorter than the open period, so the retry loop
	// cannot wait for the breaker to close.
	deadline := cfg.openFor * 8 / 10
	_, _, err = post(ctx, client, srv.URL+"/payments", deadline)
	if !errors.Is(err, retry.ErrGaveUp) || !errors.Is(err, breaker.ErrOpen) {
		return summary{}, fmt.Errorf("outage: got %v, want a give-up on an open breaker", err)
	}
	fmt.Fprintf(out, "  => gave up after %v: %s\n", time.Since(start).Round(time.Millisecond), short(err))

	fmt.Fprintln(out, "POST /payments while the breaker is open:")
	before := api.requests()
	start = time.Now()
	_, _, err = post(ctx, client, srv.URL+"/payments", deadline)
	if !errors.Is(err, breaker.ErrOpen) || api.requests() != before {
		return summary{}, fmt.Errorf("open breaker: got %v and %d requests, want a fast ErrOpen", err, api.requests()-before)
	}
	fmt.Fprintf(out, "  => failed fast in %.2fms without reaching the API: %s\n", time.Since(start).Seconds()*1000, short(err))

	// The API recovers; once the open period is over, a probe closes the breaker.
	api.set(healthy)
	select {
	case <-time.After(cfg.openFor):
	case <-ctx.Done():
		return summary{}, ctx.Err()
	}
	fmt.Fprintln(out, "POST /payments after the open period:")
	status, body, err = post(ctx, client, srv.URL+"/payments", 3*time.Second)
	if err != nil {
		return summary{}, fmt.Errorf("after recovery: %w", err)
	}
	fmt.Fprintf(out, "  => %d %s\n", status, body)

	mu.Lock()
	defer mu.Unlock()
	s := summary{Writes: api.writes(), ServerRequests: api.requests(), BreakerOpenings: openings}
	fmt.Fprintf(out, "API: %d requests, %d payments written for 2 successful calls; breaker opened %d time(s)\n",
		s.ServerRequests, s.Writes, s.BreakerOpenings)
	return s, nil
}

// post sends one payment under the caller's deadline and returns the status
// and body of the response.
func post(ctx context.Context, client *http.Client, url string, deadline time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"amount":4200}`))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.Header.Get(idempotency.ReplayedHeader) == "true" {
		b = append(b, " (replayed)"...)
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// short returns the first line of an error's message, without the URL
// http.Client puts in front.
func short(err error) string {
	var ra *retry.RetryAfterError
	if errors.As(err, &ra) && errors.Is(err, breaker.ErrOpen) {
		return fmt.Sprintf("breaker open for another %v, the deadline leaves %v (attempts: %d)",
			ra.Delay.Round(time.Millisecond), ra.Limit.Round(time.Millisecond), ra.GaveUp.Attempts)
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && strings.HasPrefix(err.Error(), "Post ") {
		err = ue.Unwrap()
	}
	var se *retry.StatusError
	if errors.As(err, &se) && !errors.Is(err, retry.ErrGaveUp) {
		return http.StatusText(se.StatusCode)
	}
	return err.Error()
}

// flakyAPI is the remote payment API: idempotency.Middleware in front of a
// handler that writes a payment, behind a fault injector (see mode).
type flakyAPI struct {
	out     io.Writer
	handler http.Handler

	mu       sync.Mutex
	mode     mode
	attempts map[string]int // attempts per idempotency key
	nreq     int
	nwrites  int
}

func newFlakyAPI(out io.Writer) (*flakyAPI, error) {
	store, err := idempotency.NewMemoryStore()
	if err != nil {
		return nil, err
	}
	idem, err := idempotency.Middleware(store)
	if err != nil {
		return nil, err
	}
	a := &flakyAPI{out: out, attempts: map[string]int{}}
	mux := http.NewServeMux()
	mux.Handle("POST /payments", idem(http.HandlerFunc(a.createPayment)))
	a.handler = mux
	return a, nil
}

func (a *flakyAPI) createPayment(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.nwrites++
	id := a.nwrites
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"payment":"pay_%d"}`, id)
}

func (a *flakyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(idempotency.DefaultKeyHeader)
	a.mu.Lock()
	a.nreq++
	a.attempts[key]++
	n, mode := a.attempts[key], a.mode
	a.mu.Unlock()

	switch {
	case mode == healthy:
		a.handler.ServeHTTP(w, r)
	case mode == down:
		fmt.Fprintf(a.out, "  api: attempt %d: 503 (down)\n", n)
		http.Error(w, "down", http.StatusServiceUnavailable)
	case n == 1:
		fmt.Fprintf(a.out, "  api: attempt %d, key %.8s…: 503\n", n, key)
		http.Error(w, "busy", http.StatusServiceUnavailable)
	case n == 2:
		// The payment is written, then the response is lost on the way back.
		a.handler.ServeHTTP(httptest.NewRecorder(), r)
		fmt.Fprintf(a.out, "  api: attempt %d: payment written, response lost (502 from the proxy)\n", n)
		http.Error(w, "bad gateway", http.StatusBadGateway)
	case n == 3:
		fmt.Fprintf(a.out, "  api: attempt %d: hangs\n", n)
		// Reading the body lets net/http notice the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	default:
		fmt.Fprintf(a.out, "  api: attempt %d: passed through\n", n)
		a.handler.ServeHTTP(w, r)
	}
}

// mode is how the API behaves.
type mode int

const (
	flaky   mode = iota // per key: a 503, a lost response, a hang, then through
	down                // 503 for everything
	healthy             // everything goes through
)

func (a *flakyAPI) set(m mode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mode = m
}

func (a *flakyAPI) writes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nwrites
}

func (a *flakyAPI) requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nreq
}

// syncWriter serialises writes from the client's and the API's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
