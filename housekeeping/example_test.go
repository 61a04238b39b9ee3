package housekeeping_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/housekeeping"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

// One Sweeper per process keeps every table bounded; the replicas agree
// through a lease row, so one of them sweeps per interval.
func Example() {
	ctx := context.Background()
	var db *sql.DB // the application's PostgreSQL (pgx's database/sql driver)
	if db == nil {
		return // (the example needs a database)
	}
	idem, err := sqlstore.New(db, steadfast.Postgres)
	if err != nil {
		log.Fatal(err)
	}
	out, err := sqloutbox.New(db, steadfast.Postgres)
	if err != nil {
		log.Fatal(err)
	}
	sweeper, err := housekeeping.New(db, steadfast.Postgres,
		housekeeping.WithIdempotency(idem),           // expired records
		housekeeping.WithInbox(idem, 7*24*time.Hour), // past every redelivery
		housekeeping.WithOutbox(out, 24*time.Hour),   // delivered messages
		housekeeping.WithDeadLetters(out, 30*24*time.Hour),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := sweeper.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if err := sweeper.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer sweeper.Stop(context.Background())
	// Output:
}
