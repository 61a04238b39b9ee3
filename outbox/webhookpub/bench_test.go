package webhookpub_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/internal/pubtest"
)

// BenchmarkThroughput compares the relay delivering signed webhooks through
// the publisher with a bare http.Client POSTing the same payloads (unsigned,
// no breaker) directly, to a loopback endpoint that answers 204.
func BenchmarkThroughput(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: pubtest.Workers}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	// The publisher's own guarded transport, loopback allowed.
	pub := newPublisher(b, srv.URL)
	payload := make([]byte, 256)
	pubtest.Throughput(b, pub,
		func(int) outbox.Message { return outbox.Message{Topic: "partner", Payload: payload} },
		func(ctx context.Context, _ int) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(payload))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
}
