package pgxoutbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox/internal/wake"
)

// Listener is an outbox.Notifier that LISTENs, over a connection of its own
// (not from a pool: transaction-mode poolers cannot LISTEN; run relays
// poll-only behind them), on the channel that a store's Enqueue notifies.
// Give it to a relay with outbox.WithNotifier. It is safe for concurrent
// use; each Listen opens its own connection.
type Listener struct {
	db      *sql.DB
	channel string
}

var _ outbox.Notifier = (*Listener)(nil)

// NewListener returns a listener for store's notifications. It connects as
// db does, so the application gives its database once: db is the *sql.DB the
// store was made with, or, where that one reaches PostgreSQL through a
// transaction-mode pooler (which cannot LISTEN), a *sql.DB opened on a direct
// connection string. db must be opened with pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib: sql.Open("pgx", ...), stdlib.OpenDB or
// stdlib.OpenDBFromPool); each Listen borrows one of its connections for a
// moment to copy its settings (host, credentials, TLS, runtime parameters such
// as search_path) and opens a connection of its own with them. NewListener
// checks its arguments but does not connect. It returns an error for a nil
// store or db, and a store whose dialect is not steadfast.Postgres.
func NewListener(store *sqloutbox.Store, db *sql.DB) (*Listener, error) {
	if store == nil {
		return nil, errors.New("pgxoutbox: NewListener: store is nil")
	}
	if db == nil {
		return nil, errors.New("pgxoutbox: NewListener: db is nil")
	}
	if d := store.Dialect(); d != steadfast.Postgres {
		return nil, fmt.Errorf("pgxoutbox: NewListener: the store's dialect is %v, not postgres", d)
	}
	return &Listener{db: db, channel: store.Table()}, nil
}

// config copies the connection settings of one of l.db's connections.
func (l *Listener) config(ctx context.Context) (*pgx.ConnConfig, error) {
	c, err := l.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var cfg *pgx.ConnConfig
	err = c.Raw(func(driverConn any) error {
		sc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the database is not opened with pgx's database/sql driver (its connections are %T)", driverConn)
		}
		cfg = sc.Conn().Config().Copy()
		// pgx set the pool connection's notification handler into its
		// config: left there, the listener's notifications would be
		// buffered on that connection (for as long as the pool keeps it,
		// and by every listener that copied it, at once). Cleared, the
		// listener's own connection installs its own.
		cfg.OnNotification = nil
		return nil
	})
	return cfg, err
}

// Listen implements outbox.Notifier: it connects, listens, calls notify once
// (notifications sent while it was not listening are lost), then once per
// notification and twice more, 20 ms and 60 ms after the last of them,
// until ctx ends or the connection fails; it returns why it stopped. The
// later calls find the messages of transactions that committed just after
// the one that notified and sent no NOTIFY of their own (Enqueue sends at
// most one per 10 ms: see sqloutbox's documentation).
func (l *Listener) Listen(ctx context.Context, notify func()) error {
	cfg, err := l.config(ctx)
	if err != nil {
		return fmt.Errorf("pgxoutbox: listen: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("pgxoutbox: listen: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return fmt.Errorf("pgxoutbox: listen: %w", err)
	}
	notify()
	again := [...]time.Duration{wake.Soon, wake.Late}
	var last time.Time // the last notification
	next := len(again)
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if next < len(again) {
			wctx, cancel = context.WithDeadline(ctx, last.Add(again[next]))
		}
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			notify()
			last, next = time.Now(), 0
		case ctx.Err() == nil && next < len(again) && !time.Now().Before(last.Add(again[next])):
			// The wait was cut short for a later call; the connection stays
			// usable (a wait that times out has read nothing).
			notify()
			next++
		default:
			return fmt.Errorf("pgxoutbox: listen: %w", err)
		}
	}
}
