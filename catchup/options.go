package catchup

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/retry"
)

// Defaults of the options (each option's doc states its own).
const (
	defaultPollInterval = 10 * time.Second
	defaultLease        = 30 * time.Second
	defaultOverlap      = time.Minute
	defaultMaxAttempts  = 5
	defaultPageSize     = 100
	defaultRefetchTopic = "catchup.refetch"
)

// Option configures a Poller (NewPoller), an HTTPSource (NewHTTPSource) or
// a Refetcher (NewRefetcher). Options are made by the With functions of this
// package; a constructor refuses, with an error naming it, an option that
// does not apply to it.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

// newOption: for lists the constructors it applies to (none: all).
func newOption(name string, set func(*config) error, for_ ...string) Option {
	return &optionFunc{Name: name, For: for_, Set: set}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("catchup", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

const (
	ctorPoller    = "NewPoller"
	ctorSource    = "NewHTTPSource"
	ctorRefetcher = "NewRefetcher"
)

// paging is the shape of an HTTP list.
type paging uint8

const (
	pagingCursor paging = iota // ?starting_after=<last id> and has_more
	pagingNext                 // a next URL in the body
	pagingLink                 // a Link: <...>; rel="next" header
)

type config struct {
	// Poller.
	consumer     string
	eventID      func(payload []byte) (string, error)
	overlap      time.Duration
	overlapCount int
	overlapSet   string // the option that set the overlap, for errors
	interval     time.Duration
	intervalSet  bool
	lease        time.Duration
	leaseSet     bool
	maxAttempts  int
	retry        *retry.Policy
	logger       *slog.Logger
	meter        metric.MeterProvider

	// HTTPSource.
	paging      paging
	cursorParam string
	nextField   string
	itemsField  string
	sizeParam   string
	pageSize    int
	newestFirst int

	// Refetcher.
	topic string
}

func defaults() config {
	return config{
		overlap:     defaultOverlap,
		overlapSet:  "WithOverlap",
		interval:    defaultPollInterval,
		lease:       defaultLease,
		maxAttempts: defaultMaxAttempts,
		cursorParam: "starting_after",
		itemsField:  "data",
		sizeParam:   "limit",
		pageSize:    defaultPageSize,
		topic:       defaultRefetchTopic,
	}
}

// WithConsumer sets the consumer name under which the poller and its
// webhook handler mark event ids in the inbox. Both paths of one source must
// use the same name: 1 to 255 bytes of UTF-8 without NUL. Defaults to the
// source name given to NewPoller.
func WithConsumer(name string) Option {
	return newOption("WithConsumer", func(c *config) error {
		if !validName(name) {
			return fmt.Errorf("consumer name %.40q must be 1 to 255 bytes of UTF-8 without NUL", name)
		}
		c.consumer = name
		return nil
	}, ctorPoller)
}

// WithEventID sets how the provider's event id is taken from an event's
// payload, on both paths: from each listed event (overriding the id the
// Source gave) and from each webhook body. Set it when the list item or the
// webhook body keeps the id elsewhere than a top-level "id" field; a
// delivery's webhook-id header is often not the id the list shows. fn must
// be safe for concurrent use. Defaults to the top-level "id" member of the
// JSON payload (a string or a number).
func WithEventID(fn func(payload []byte) (string, error)) Option {
	return newOption("WithEventID", func(c *config) error {
		if fn == nil {
			return errors.New("nil function")
		}
		c.eventID = fn
		return nil
	}, ctorPoller)
}

// WithOverlap sets the overlap window by time: the cursor the poller stores
// stays behind the events created within d before the newest event it has
// read, so that each pass reads them again, and an event that the provider's
// list shows late (after later ones), but within d of its creation, is not
// skipped. The inbox absorbs the repeats. Events without a creation time
// count as created with the event before them. Defaults to one minute;
// WithOverlapEvents sets a window by count instead.
func WithOverlap(d time.Duration) Option {
	return newOption("WithOverlap", func(c *config) error {
		if d < 0 {
			return fmt.Errorf("overlap %v must not be negative", d)
		}
		c.overlap, c.overlapCount, c.overlapSet = d, 0, "WithOverlap"
		return nil
	}, ctorPoller)
}

// WithOverlapEvents sets the overlap window by count: the cursor the poller
// stores stays n events behind the newest event it has read, so that an
// event the list shows late, at most n places after where it belongs, is not
// skipped. Sources whose cursors are per page (next URLs, Link headers)
// resume at the start of the page holding that event. Defaults to a window
// by time (WithOverlap).
func WithOverlapEvents(n int) Option {
	return newOption("WithOverlapEvents", func(c *config) error {
		if n < 0 {
			return fmt.Errorf("overlap %d must not be negative", n)
		}
		c.overlap, c.overlapCount, c.overlapSet = 0, n, "WithOverlapEvents"
		if n == 0 {
			c.overlapCount = -1 // no overlap at all
		}
		return nil
	}, ctorPoller)
}

// WithPollInterval sets the time between two passes over the list (a pass
// reads pages until the list has no more). It must be shorter than the
// lease, which the poller renews at each pass. Defaults to 10s.
func WithPollInterval(d time.Duration) Option {
	return newOption("WithPollInterval", func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("interval %v must be positive", d)
		}
		c.interval, c.intervalSet = d, true
		return nil
	}, ctorPoller)
}

// WithLease sets the lease by which one poller per source, among all
// replicas, polls: the holder renews it with every page and every pass; when
// it dies, another replica takes over once the lease has run out, within
// about a third of the lease more. Lease times are compared on the
// database's clock. Defaults to 30s.
func WithLease(d time.Duration) Option {
	return newOption("WithLease", func(c *config) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("lease %v is shorter than 100ms", d)
		}
		c.lease, c.leaseSet = d, true
		return nil
	}, ctorPoller)
}

// WithMaxAttempts sets how many times the poller applies an event whose
// handler fails before it makes the event a dead letter and moves its cursor
// past it. Attempts are counted in the store, across restarts. Defaults to
// 5.
func WithMaxAttempts(n int) Option {
	return newOption("WithMaxAttempts", func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%d must be at least 1", n)
		}
		c.maxAttempts = n
		return nil
	}, ctorPoller)
}

// WithRetry sets the retry policy under which the poller fetches each page.
// A failure that the policy gives up on (a provider that keeps answering 429
// or 5xx) ends the pass with the cursor where it was; the next pass starts
// after the delay the failure asked for (Retry-After), or after the poll
// interval. Defaults to a policy of retry.New() without options.
func WithRetry(p *retry.Policy) Option {
	return newOption("WithRetry", func(c *config) error {
		if p == nil {
			return errors.New("nil *retry.Policy")
		}
		c.retry = p
		return nil
	}, ctorPoller)
}

// WithLogger sets the logger. The poller logs lease changes at info, failed
// passes at warn and dead letters at error; nothing per event. Defaults to
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return newOption("WithLogger", func(c *config) error {
		if l == nil {
			return errors.New("nil *slog.Logger")
		}
		c.logger = l
		return nil
	}, ctorPoller, ctorRefetcher)
}

// WithMeterProvider sets the OpenTelemetry meter provider of the poller's
// metrics: steadfast.catchup.lag (seconds since the newest event read was created),
// steadfast.catchup.pages, steadfast.catchup.events (by catchup.outcome: applied, duplicate) and
// steadfast.catchup.dead_letters, each with the attribute catchup.source. Defaults to the global
// provider (otel.GetMeterProvider()), a no-op unless the application
// installs an SDK.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return newOption("WithMeterProvider", func(c *config) error {
		if mp == nil {
			return errors.New("nil metric.MeterProvider")
		}
		c.meter = mp
		return nil
	}, ctorPoller)
}

// WithCursorParam sets the query parameter that carries the cursor in a list
// of the "starting_after" shape: the source asks for the events after the
// last one it read with ?<param>=<event id>, and reads "has_more" from the
// body. Defaults to "starting_after" (Stripe's shape).
func WithCursorParam(param string) Option {
	return newOption("WithCursorParam", func(c *config) error {
		if param == "" {
			return errors.New("empty parameter name")
		}
		c.paging, c.cursorParam = pagingCursor, param
		return nil
	}, ctorSource)
}

// WithNextField makes the source follow the URL of the next page found in
// the body's top-level member field ("next", "next_url"); a null, empty or
// missing member means no more pages. The next URL must have the list URL's
// scheme and host. Defaults to the "starting_after" shape (WithCursorParam).
func WithNextField(field string) Option {
	return newOption("WithNextField", func(c *config) error {
		if field == "" {
			return errors.New("empty field name")
		}
		c.paging, c.nextField = pagingNext, field
		return nil
	}, ctorSource)
}

// WithLinkHeader makes the source follow the URL of the next page in the
// response's Link header (rel="next", RFC 8288); no such link means no more
// pages. The next URL must have the list URL's scheme and host. Defaults to
// the "starting_after" shape (WithCursorParam).
func WithLinkHeader() Option {
	return newOption("WithLinkHeader", func(c *config) error {
		c.paging = pagingLink
		return nil
	}, ctorSource)
}

// WithItemsField sets the top-level member of the body that holds the
// events. A body that is a JSON array is read as the events whatever this
// says. Defaults to "data".
func WithItemsField(field string) Option {
	return newOption("WithItemsField", func(c *config) error {
		if field == "" {
			return errors.New("empty field name")
		}
		c.itemsField = field
		return nil
	}, ctorSource)
}

// WithPageSize sets the query parameter and value that ask for n events per
// page (an empty param sends none). Defaults to "limit" and 100.
func WithPageSize(param string, n int) Option {
	return newOption("WithPageSize", func(c *config) error {
		if n < 1 || n > 10000 {
			return fmt.Errorf("page size %d must be between 1 and 10000", n)
		}
		c.sizeParam, c.pageSize = param, n
		return nil
	}, ctorSource)
}

// WithNewestFirst says that the provider lists its events newest first (as
// Stripe's events list does): to read the events after a cursor, the source
// walks from the newest page back until it meets the cursor's event, reading
// at most maxPages pages, and returns what it read oldest first. When the
// cursor's event is not met within maxPages pages, List returns an error
// matching ErrWalkTooLong and the cursor does not move: raise maxPages, poll
// more often, or set the cursor (sqlcatchup's Store.SetCursor: an event id,
// or catchup.Now). The first pass, from the empty cursor, walks back to the
// oldest event the provider keeps. The cursor of such a list is an event
// id. Defaults to a list that is oldest first.
func WithNewestFirst(maxPages int) Option {
	return newOption("WithNewestFirst", func(c *config) error {
		if maxPages < 1 {
			return fmt.Errorf("maxPages %d must be at least 1", maxPages)
		}
		c.newestFirst = maxPages
		return nil
	}, ctorSource)
}

// WithRefetchTopic sets the outbox topic under which the Refetcher enqueues
// refetches (a relay whose publisher is the Refetcher must deliver it).
// Defaults to "catchup.refetch".
func WithRefetchTopic(topic string) Option {
	return newOption("WithRefetchTopic", func(c *config) error {
		if topic == "" {
			return errors.New("empty topic")
		}
		c.topic = topic
		return nil
	}, ctorRefetcher)
}
