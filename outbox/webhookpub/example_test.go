package webhookpub_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/ratelimit"
	"github.com/steadfast-go/steadfast/webhook"
)

func Example() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	// The partner verifies what it receives.
	verifier, _ := webhook.NewVerifier([]string{secret})
	verify, _ := webhook.NewMiddleware(verifier)
	partner := httptest.NewServer(verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("partner got", r.Header.Get("webhook-id"))
	})))
	defer partner.Close()

	pub, err := webhookpub.New(map[string]webhookpub.Endpoint{
		"invoices": {URL: partner.URL, Secrets: []string{secret}},
	},
		webhookpub.WithAttemptTimeout(5*time.Second),
		// The partner here serves on loopback, which the publisher refuses
		// unless allowed: a tenant's URL must not reach internal addresses.
		webhookpub.WithAllowedNetworks("127.0.0.0/8", "::1"))
	if err != nil {
		panic(err)
	}
	defer pub.Close() // after the relay's Stop
	// The relay (outbox.NewRelay(store, pub)) calls Publish for each attempt.
	err = pub.Publish(context.Background(), outbox.Delivery{Message: outbox.Message{
		ID: "0190f5e2-7b4c-7000-8000-0000000000aa", Topic: "invoices", Payload: []byte(`{"paid":true}`),
	}, Attempt: 1})
	fmt.Println("delivered:", err == nil)

	err = pub.Publish(context.Background(), outbox.Delivery{Message: outbox.Message{
		ID: "0190f5e2-7b4c-7000-8000-0000000000ab", Topic: "refunds",
	}})
	fmt.Println(errors.Is(err, webhookpub.ErrUnknownEndpoint))
	// Output:
	// partner got 0190f5e2-7b4c-7000-8000-0000000000aa
	// delivered: true
	// true
}

// A platform sends webhooks to its customers: each message's destination is
// a customer's subscription, looked up in the platform's own table.
func ExampleWithResolver() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	customer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("customer got", r.Header.Get("webhook-id"))
	}))
	defer customer.Close()
	subscriptions := map[string]webhookpub.Endpoint{ // the platform's table
		"acme/invoices": {URL: customer.URL, Secrets: []string{secret}},
	}

	pub, err := webhookpub.New(nil,
		webhookpub.WithResolver(func(ctx context.Context, destination string) (webhookpub.Endpoint, error) {
			ep, ok := subscriptions[destination]
			if !ok {
				return webhookpub.Endpoint{}, webhookpub.ErrUnknownEndpoint // dead-lettered
			}
			return ep, nil
		}),
		webhookpub.WithResolverCache(10_000, time.Minute),
		webhookpub.WithAllowedNetworks("127.0.0.1")) // the customer here is on loopback
	if err != nil {
		panic(err)
	}
	err = pub.Publish(context.Background(), outbox.Delivery{Message: outbox.Message{
		ID: "0190f5e2-7b4c-7000-8000-0000000000ac", Topic: "acme/invoices", Payload: []byte(`{}`),
	}, Attempt: 1})
	fmt.Println("delivered:", err == nil)
	err = pub.Publish(context.Background(), outbox.Delivery{Message: outbox.Message{
		ID: "0190f5e2-7b4c-7000-8000-0000000000ad", Topic: "globex/invoices", Payload: []byte(`{}`),
	}, Attempt: 1})
	fmt.Println(errors.Is(err, webhookpub.ErrUnknownEndpoint))
	// Output:
	// customer got 0190f5e2-7b4c-7000-8000-0000000000ac
	// delivered: true
	// true
}

// A partner allows 10 requests per second: the relay sends it no more, and
// holds its messages back in memory meanwhile, without spending attempts or
// holding up the other destinations. What the partner announces (a 429's
// Retry-After, RateLimit headers) narrows the quota.
func ExampleWithRateLimit() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer partner.Close()

	// Keyed by destination; give it ratelimit.WithStore to share the quota
	// between the replicas.
	lim, err := ratelimit.New(ratelimit.WithLimit(10, time.Second, 1))
	if err != nil {
		panic(err)
	}
	pub, err := webhookpub.New(map[string]webhookpub.Endpoint{
		"partner": {URL: partner.URL, Secrets: []string{secret}},
	},
		webhookpub.WithRateLimit(lim, "partner"),
		webhookpub.WithAllowedNetworks("127.0.0.1"))
	if err != nil {
		panic(err)
	}
	// The relay takes each delivery's budget with the publisher's Throttle:
	// outbox.NewRelay(store, pub, relayOpts...).
	relayOpts := []outbox.Option{outbox.WithThrottle(pub.Throttle)}
	_ = relayOpts

	// What the relay sees: the burst of 1, then a wait of about 100 ms.
	fmt.Println(pub.Throttle(context.Background(), "partner"))
	err = pub.Throttle(context.Background(), "partner")
	fmt.Println(errors.Is(err, ratelimit.ErrLimited))
	// Output:
	// <nil>
	// true
}
