package webhookpub

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress is matched by the (permanent) error of Publish, and by
// the error of New, for an endpoint whose address is not globally reachable
// (loopback, private, link-local such as the cloud metadata address
// 169.254.169.254, shared CGNAT space, unique-local IPv6, unspecified,
// multicast, and the other special-purpose ranges of IANA's registries) and
// not in a network allowed by WithAllowedNetworks. The check runs when the
// connection is dialled, on the address actually dialled, so a name that
// resolves to such an address (DNS rebinding included) is refused too.
var ErrForbiddenAddress = errors.New("webhookpub: address not allowed")

// guard is the address policy of the publisher's own transport.
type guard struct {
	allowed []netip.Prefix // WithAllowedNetworks
}

// check refuses an address that is neither globally reachable nor allowed.
func (g *guard) check(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	for _, p := range g.allowed {
		if p.Contains(a) {
			return nil
		}
	}
	if !globallyReachable(a) {
		return fmt.Errorf("%w: %s is not globally reachable (allow its network with WithAllowedNetworks)", ErrForbiddenAddress, a)
	}
	return nil
}

// control is the net.Dialer's Control function: it runs after the name was
// resolved, on each address about to be dialled.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the dialled address %q: %v", ErrForbiddenAddress, address, err)
	}
	return g.check(ap.Addr())
}

// transport returns the publisher's own transport: http.DefaultTransport's
// settings, no proxy from the environment (through a proxy the dialled
// address would be the proxy's, and the check would be blind), and a dialer
// that checks every address it connects to.
func (g *guard) transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	t.DialContext = d.DialContext
	t.DialTLSContext = nil
	// The relay publishes up to its concurrency (64 by default) at once,
	// often to one endpoint: keep that many connections for reuse.
	t.MaxIdleConnsPerHost = 64
	return t
}

// checkURLHost refuses, before anything is dialled, a URL whose host is a
// literal address the guard would refuse. Names are checked when dialled.
func (g *guard) checkURLHost(host string) error {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil
	}
	return g.check(a)
}

// parseNetwork reads one network of WithAllowedNetworks: a CIDR prefix
// ("10.0.0.0/8", "fd00::/8") or a single address ("127.0.0.1", "::1").
// IPv4-mapped IPv6 forms are unmapped, as dialled addresses are.
func parseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		a := p.Addr()
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("network %q has a zone", s)
		}
		if a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("network %q mixes IPv6 and IPv4-mapped addresses", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR prefix nor an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// globallyReachable reports whether a (unmapped, without zone) may be
// reached from a public network, per the IANA IPv4 and IPv6 Special-Purpose
// Address Registries (an entry whose "Globally Reachable" is False, or N/A,
// is refused), with multicast, broadcast and, for IPv6, everything outside
// global unicast (2000::/3) refused as well. A NAT64 address (64:ff9b::/96)
// is judged by the IPv4 address it embeds.
func globallyReachable(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	if a.Is4() {
		return reachable(a, v4Reachable, v4Special)
	}
	if nat64.Contains(a) {
		b := a.As16()
		return globallyReachable(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	if !globalUnicast.Contains(a) {
		return false
	}
	return reachable(a, v6Reachable, v6Special)
}

// reachable: inside an exception that the registry marks globally
// reachable, or outside every special-purpose block.
func reachable(a netip.Addr, exceptions, special []netip.Prefix) bool {
	for _, p := range exceptions {
		if p.Contains(a) {
			return true
		}
	}
	for _, p := range special {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

var (
	nat64         = netip.MustParsePrefix("64:ff9b::/96")
	globalUnicast = netip.MustParsePrefix("2000::/3")

	// IANA IPv4 Special-Purpose Address Registry: blocks not globally
	// reachable, plus multicast (224.0.0.0/4, its own registry).
	v4Special = prefixes(
		"0.0.0.0/8",          // "this network" (RFC 791)
		"10.0.0.0/8",         // private use (RFC 1918)
		"100.64.0.0/10",      // shared address space, CGNAT (RFC 6598)
		"127.0.0.0/8",        // loopback (RFC 1122)
		"169.254.0.0/16",     // link local, cloud metadata (RFC 3927)
		"172.16.0.0/12",      // private use (RFC 1918)
		"192.0.0.0/24",       // IETF protocol assignments (RFC 6890)
		"192.0.2.0/24",       // documentation, TEST-NET-1 (RFC 5737)
		"192.88.99.0/24",     // deprecated 6to4 relay anycast (RFC 7526)
		"192.168.0.0/16",     // private use (RFC 1918)
		"198.18.0.0/15",      // benchmarking (RFC 2544)
		"198.51.100.0/24",    // documentation, TEST-NET-2 (RFC 5737)
		"203.0.113.0/24",     // documentation, TEST-NET-3 (RFC 5737)
		"224.0.0.0/4",        // multicast (RFC 5771)
		"240.0.0.0/4",        // reserved (RFC 1112)
		"255.255.255.255/32", // limited broadcast (RFC 919)
	)
	// Entries inside those blocks that the registry marks globally
	// reachable.
	v4Reachable = prefixes(
		"192.0.0.9/32",  // Port Control Protocol anycast (RFC 7723)
		"192.0.0.10/32", // TURN anycast (RFC 8155)
	)

	// IANA IPv6 Special-Purpose Address Registry, inside 2000::/3 (what is
	// outside, such as ::1, ::, fc00::/7, fe80::/10, ff00::/8 and 100::/64,
	// is refused as a whole).
	v6Special = prefixes(
		"2001::/23",     // IETF protocol assignments (RFC 2928), Teredo 2001::/32 included
		"2001:db8::/32", // documentation (RFC 3849)
		"2002::/16",     // 6to4 (RFC 3056): reachability N/A
		"3fff::/20",     // documentation (RFC 9637)
		"5f00::/16",     // segment routing SIDs (RFC 9602)
	)
	v6Reachable = prefixes(
		"2001:1::1/128",   // Port Control Protocol anycast (RFC 7723)
		"2001:1::2/128",   // TURN anycast (RFC 8155)
		"2001:1::3/128",   // DNS-SD service registration protocol anycast (RFC 9665)
		"2001:3::/32",     // AMT (RFC 7450)
		"2001:4:112::/48", // AS112-v6 (RFC 7535)
		"2001:20::/28",    // ORCHIDv2 (RFC 7343)
		"2001:30::/28",    // drone remote ID protocol entity tags (RFC 9374)
	)
)

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}
