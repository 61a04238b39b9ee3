package webhookpub_test

import (
	"context"
	"strings"
	"testing"

	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/retry"
)

// A header value with a space or tab at either end is no RFC 9110 field
// value: an HTTP/1.1 recipient strips the padding, so it would arrive
// altered. New refuses it in an endpoint's headers, and Publish refuses it,
// permanently and unsent, in a message's (as the outbox's Enqueue does).
func TestPaddedHeaderValuesRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"acme ", " acme", "acme\t", "\tacme"} {
		_, err := webhookpub.New(map[string]webhookpub.Endpoint{"a": {URL: "https://example.com/hook", Secrets: []string{secret}, Headers: map[string]string{"X-Tenant": v}}})
		if err == nil || !strings.Contains(err.Error(), `endpoint "a"`) || !strings.Contains(err.Error(), "X-Tenant") {
			t.Errorf("New with the endpoint header X-Tenant: %q = %v, want an error naming the endpoint and the header", v, err)
		}
	}
	ep := newEndpoint(t, status(200))
	p := newPublisher(t, ep.srv.URL)
	for _, v := range []string{"7 ", " 7", "7\t"} {
		d := delivery("0190f5e2-0000-7000-8000-0000000000b1")
		d.Headers = map[string]string{"X-Note": v}
		if err := p.Publish(context.Background(), d); !retry.IsPermanent(err) || !strings.Contains(err.Error(), "X-Note") {
			t.Errorf("Publish with the header X-Note: %q = %v, want a permanent error naming it", v, err)
		}
	}
	if n := len(ep.seen()); n != 0 {
		t.Errorf("endpoint saw %d requests with padded header values", n)
	}
}
