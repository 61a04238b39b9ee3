package webhookpub_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/outbox/webhookpub"
	"github.com/steadfast-go/steadfast/retry"
)

// TestInternalAddressesRefusedByDefault: a publisher built without options
// refuses to connect to an address that is not globally reachable, whether
// the URL names it literally, through a name that resolves to it (the check
// runs on the dialled address), or in IPv4-mapped IPv6 form. The refusal is
// permanent (dead-lettered, not retried into the internal network), never
// counted against the breaker, and nothing reaches the server.
func TestInternalAddressesRefusedByDefault(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	u, err := url.Parse(ep.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	for name, target := range map[string]string{
		"literal loopback": ep.srv.URL,
		"name of loopback": "http://localhost:" + port + "/",
		"IPv4-mapped IPv6": "http://[::ffff:127.0.0.1]:" + port + "/",
		"unspecified":      "http://0.0.0.0:" + port + "/",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Built through the resolver, as a tenant's URL is, so that New's
			// early check of literal addresses does not hide the dial check.
			p, err := webhookpub.New(nil, webhookpub.WithResolver(func(context.Context, string) (webhookpub.Endpoint, error) {
				return webhookpub.Endpoint{URL: target, Secrets: []string{secret}}, nil
			}), webhookpub.WithBreaker(breaker.WithConsecutiveFailures(1)))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				err := p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-0000000000f1"))
				if !errors.Is(err, webhookpub.ErrForbiddenAddress) || !retry.IsPermanent(err) {
					t.Fatalf("publish %d to %s = %v, want a permanent ErrForbiddenAddress", i, target, err)
				}
				if errors.Is(err, breaker.ErrOpen) {
					t.Fatalf("publish %d = %v: a refused address opened the breaker", i, err)
				}
			}
		})
	}
	if n := len(ep.seen()); n != 0 {
		t.Errorf("the internal server saw %d requests, want 0", n)
	}
}

// TestAllowedNetworks: WithAllowedNetworks opens exactly the networks named;
// WithUnguardedClient hands the check to the caller's client.
func TestAllowedNetworks(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, status(200))
	publish := func(opts ...webhookpub.Option) error {
		t.Helper()
		p, err := webhookpub.New(map[string]webhookpub.Endpoint{"partner": {URL: ep.srv.URL, Secrets: []string{secret}}}, opts...)
		if err != nil {
			return err
		}
		return p.Publish(context.Background(), delivery("0190f5e2-0000-7000-8000-0000000000f2"))
	}
	if err := publish(); !errors.Is(err, webhookpub.ErrForbiddenAddress) {
		t.Errorf("no option: %v, want ErrForbiddenAddress (New refuses the literal loopback URL)", err)
	}
	if err := publish(webhookpub.WithAllowedNetworks("10.0.0.0/8", "fd00::/8")); !errors.Is(err, webhookpub.ErrForbiddenAddress) {
		t.Errorf("other networks allowed: %v, want ErrForbiddenAddress", err)
	}
	if err := publish(webhookpub.WithAllowedNetworks("127.0.0.1")); err != nil {
		t.Errorf("loopback address allowed: %v", err)
	}
	if err := publish(webhookpub.WithAllowedNetworks("::ffff:127.0.0.0/104")); err != nil {
		t.Errorf("loopback allowed in IPv4-mapped form: %v", err)
	}
	if err := publish(webhookpub.WithUnguardedClient(&http.Client{})); err != nil {
		t.Errorf("the caller's client: %v", err)
	}
	if n := len(ep.seen()); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
}

// TestGuardedTransportUsesNoProxy: through a proxy from the environment the
// dialled address would be the proxy's, and the check blind.
func TestGuardedTransportUsesNoProxy(t *testing.T) {
	t.Parallel()
	p, err := webhookpub.New(map[string]webhookpub.Endpoint{"partner": {URL: "https://partner.example/", Secrets: []string{secret}}})
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := webhookpub.Transport(p).(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Fatalf("transport %T with a proxy function: want an *http.Transport without one", webhookpub.Transport(p))
	}
}

// TestGloballyReachable checks the policy against the IANA special-purpose
// registries, entry by entry.
func TestGloballyReachable(t *testing.T) {
	t.Parallel()
	refused := []string{
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
		"127.0.0.1", "127.255.255.254", "169.254.169.254", "169.254.0.1", "172.16.0.1", "172.31.255.255",
		"192.0.0.1", "192.0.0.8", "192.0.0.170", "192.0.2.1", "192.88.99.1", "192.168.1.1",
		"198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250",
		"240.0.0.1", "255.255.255.255",
		"::", "::1", "::ffff:0:0", "64:ff9b:1::1", "64:ff9b::a00:1", "64:ff9b::7f00:1", "100::1",
		"2001::1", "2001:2::1", "2001:10::1", "2001:db8::1", "2002:c000:201::1", "3fff::1", "5f00::1",
		"fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "::127.0.0.1",
	}
	reachable := []string{
		"1.1.1.1", "8.8.8.8", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
		"192.0.0.9", "192.0.0.10", "192.31.196.1", "192.52.193.1", "192.175.48.1", "198.17.255.255",
		"2606:4700:4700::1111", "2a00:1450:4001::1", "2001:1::1", "2001:1::2", "2001:3::1",
		"2001:4:112::1", "2001:20::1", "2001:30::1", "2620:4f:8000::1", "64:ff9b::808:808",
	}
	for _, s := range refused {
		a := netip.MustParseAddr(s)
		if webhookpub.GloballyReachable(a.Unmap()) {
			t.Errorf("%s is reachable, want refused", s)
		}
	}
	for _, s := range reachable {
		if !webhookpub.GloballyReachable(netip.MustParseAddr(s)) {
			t.Errorf("%s is refused, want reachable", s)
		}
	}
}

// TestLiteralInternalAddressRefusedByNew: a static endpoint whose URL names
// an internal address is refused at once.
func TestLiteralInternalAddressRefusedByNew(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://169.254.169.254/latest/meta-data", "http://[::1]:8080/", "http://10.1.2.3/hook", "http://[::ffff:10.0.0.1]/"} {
		_, err := webhookpub.New(map[string]webhookpub.Endpoint{"a": {URL: u, Secrets: []string{secret}}})
		if !errors.Is(err, webhookpub.ErrForbiddenAddress) {
			t.Errorf("New(%s) = %v, want ErrForbiddenAddress", u, err)
		}
	}
	// A listening internal service is not reached either: the error comes
	// before any connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := webhookpub.New(map[string]webhookpub.Endpoint{"a": {URL: "http://" + ln.Addr().String(), Secrets: []string{secret}}}); !errors.Is(err, webhookpub.ErrForbiddenAddress) {
		t.Errorf("New(loopback) = %v, want ErrForbiddenAddress", err)
	}
}
