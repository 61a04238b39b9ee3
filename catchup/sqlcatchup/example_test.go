package sqlcatchup_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
	"github.com/steadfast-go/steadfast/catchup/sqlcatchup"
)

// An operator sets where pollers start: a new source skips the provider's
// history (the poller reads the list to its end without applying it, then
// applies what comes after), another resumes after a given event. Both are
// safe while a poller runs. Cursors shows where each stands.
func ExampleStore_SetCursor() {
	dir, err := os.MkdirTemp("", "sqlcatchup-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, err := sqlcatchup.New(db, steadfast.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	if err := store.SetCursor(ctx, "stripe", catchup.Now); err != nil {
		log.Fatal(err)
	}
	if err := store.SetCursor(ctx, "github", "evt_1042"); err != nil {
		log.Fatal(err)
	}

	cursors, err := store.Cursors(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range cursors {
		fmt.Printf("%s: cursor %q, lease holder %q, %d dead letters\n", c.Source, c.Cursor, c.Owner, c.DeadLetters)
	}
	// Output:
	// github: cursor "evt_1042", lease holder "", 0 dead letters
	// stripe: cursor "catchup:now:", lease holder "", 0 dead letters
}
