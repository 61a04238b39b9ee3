package sqloutbox

import (
	"fmt"

	"github.com/steadfast-go/steadfast/internal/option"
	"github.com/steadfast-go/steadfast/internal/sqldb"
)

const (
	// defaultTable is the default of WithTable.
	defaultTable = "steadfast_outbox"
	// defaultMaxPayload is the default of WithMaxPayload: 1 MiB.
	defaultMaxPayload = 1 << 20
)

// tableSuffixes are what the store appends to the table's name for its
// other tables and its indexes.
var tableSuffixes = []string{"_keys", "_pauses", "_ready", "_key", "_head", "_parked", "_done", "_dead", "_id"}

// Option configures a Store. Options are made by the With functions of this
// package and applied in order; New refuses, with an error naming it, an
// option whose value makes no sense.
type Option interface {
	setting() *option.Setting[config]
}

type optionFunc option.Setting[config]

func (o *optionFunc) setting() *option.Setting[config] { return (*option.Setting[config])(o) }

func newOption(name string, set func(*config) error) Option {
	return &optionFunc{Name: name, Set: set}
}

func applyOptions(ctor string, c *config, opts []Option) error {
	return option.Apply("sqloutbox", ctor, c, len(opts), func(i int) *option.Setting[config] {
		if opts[i] == nil {
			return nil
		}
		return opts[i].setting()
	})
}

type config struct {
	table         sqldb.Table
	maxPayload    int
	notify        bool
	durable       bool
	keepDelivered bool
	fillFactor    int // PostgreSQL: the table's fill factor (tests may change it)
}

// defaultFillFactor is the fill factor of the PostgreSQL table: half of
// each page is left free when messages are enqueued, so that the claim of
// every message of a page, and its renewals, rewrite the rows in place
// (HOT updates) instead of adding an entry to every index.
const defaultFillFactor = 50

// WithTable sets the table's name: "name" or "schema.name" ("app.outbox": a
// PostgreSQL schema, a MySQL database), each part an identifier
// [A-Za-z_][A-Za-z0-9_]{0,62} short enough for the names made from it (the
// indexes, and on MySQL the table name_keys). Defaults to
// "steadfast_outbox".
func WithTable(name string) Option {
	return newOption("WithTable", func(c *config) error {
		t, err := sqldb.ParseTable(name, tableSuffixes...)
		if err != nil {
			return err
		}
		c.table = t
		return nil
	})
}

// WithMaxPayload sets the largest payload Enqueue accepts, in bytes. n must
// be positive. Defaults to 1 MiB.
func WithMaxPayload(n int) Option {
	return newOption("WithMaxPayload", func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("size %d must be positive", n)
		}
		c.maxPayload = n
		return nil
	})
}

// WithoutNotify stops Enqueue from sending a PostgreSQL NOTIFY, for
// deployments whose relays poll (behind a transaction-mode pooler).
// Defaults to notifying on PostgreSQL, at most once every 10 ms per store
// (see the package documentation); the other dialects never notify.
func WithoutNotify() Option {
	return newOption("WithoutNotify", func(c *config) error { c.notify = false; return nil })
}

// WithKeepDelivered keeps delivered messages in the table, marked
// delivered (Get shows them, with their delivery time), until Cleanup
// deletes them: run housekeeping.WithOutbox with the retention you want.
// Defaults to deleting a message in the write-back that records its
// delivery: that write-back is then the cheapest write the database has
// (no new row version, no index entry), there is nothing for Cleanup to do,
// and Get answers ErrNotFound for a delivered message. Dead letters are
// kept either way.
func WithKeepDelivered() Option {
	return newOption("WithKeepDelivered", func(c *config) error { c.keepDelivered = true; return nil })
}

// WithDurableWriteBacks makes the relay's claims and write-backs on
// PostgreSQL commit synchronously. By default they commit asynchronously
// (synchronous_commit off for those statements only; enqueues are never
// affected): a database crash may then forget the last fraction of a second
// of write-backs, and the messages concerned are delivered again. Delivery is
// at least once either way; asynchronous commits spare a WAL flush per batch.
func WithDurableWriteBacks() Option {
	return newOption("WithDurableWriteBacks", func(c *config) error { c.durable = true; return nil })
}
