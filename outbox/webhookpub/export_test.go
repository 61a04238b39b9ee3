package webhookpub

import (
	"net/http"
	"time"
)

// SetClock replaces the clock of p's signatures, Retry-After dates and
// resolver cache (tests only; call it before p is used).
func SetClock(p *Publisher, now func() time.Time) { p.now = now }

// GloballyReachable is the address policy's registry check.
var GloballyReachable = globallyReachable

// Transport returns the transport p sends through.
func Transport(p *Publisher) http.RoundTripper { return p.client.Transport }

// NoKeepAlives makes p's own transport close each connection after its
// request (tests in synctest bubbles).
func NoKeepAlives(p *Publisher) { p.client.Transport.(*http.Transport).DisableKeepAlives = true }

// ParseNetwork and QuoteBody are the parsers of WithAllowedNetworks and of a
// failed answer's body.
var (
	ParseNetwork = parseNetwork
	QuoteBody    = quoteBody
)
