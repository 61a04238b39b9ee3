package pgxoutbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// Listener is an outbox.Notifier that LISTENs, over a connection of its own
// (not from a pool: transaction-mode poolers cannot LISTEN; run relays
// poll-only behind them), on the channel that a store's Enqueue notifies.
// Give it to a relay with outbox.WithNotifier. It is safe for concurrent
// use; each Listen opens its own connection.
type Listener struct {
	connString string
	channel    string
}

var _ outbox.Notifier = (*Listener)(nil)

// NewListener returns a listener for store's notifications, connecting with
// the pgx connection string connString. It checks its arguments but does not
// connect. It returns an error for a nil store, a store whose dialect is
// not sqloutbox.Postgres, and a connection string pgx cannot parse.
func NewListener(store *sqloutbox.Store, connString string) (*Listener, error) {
	if store == nil {
		return nil, errors.New("pgxoutbox: NewListener: store is nil")
	}
	if d := store.Dialect(); d != sqloutbox.Postgres {
		return nil, fmt.Errorf("pgxoutbox: NewListener: the store's dialect is %v, not postgres", d)
	}
	if _, err := pgx.ParseConfig(connString); err != nil {
		return nil, fmt.Errorf("pgxoutbox: NewListener: %w", err)
	}
	return &Listener{connString: connString, channel: store.Table()}, nil
}

// Listen implements outbox.Notifier: it connects, listens, calls notify once
// (notifications sent while it was not listening are lost) and then once per
// notification, until ctx ends or the connection fails; it returns why it
// stopped.
func (l *Listener) Listen(ctx context.Context, notify func()) error {
	conn, err := pgx.Connect(ctx, l.connString)
	if err != nil {
		return fmt.Errorf("pgxoutbox: listen: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return fmt.Errorf("pgxoutbox: listen: %w", err)
	}
	notify()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("pgxoutbox: listen: %w", err)
		}
		notify()
	}
}
