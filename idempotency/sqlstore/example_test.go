package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// exampleDB opens a fresh SQLite file database (import modernc.org/sqlite).
func exampleDB() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "sqlstore-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	return db, func() { db.Close(); os.RemoveAll(dir) }
}

// Claim a key, store the result, and replay it to a retry.
func Example() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()
	store, err := sqlstore.New(db, steadfast.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	c, err := store.Claim(ctx, "order-42", "fingerprint", 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first claim acquired:", c.Acquired)
	if err := store.Complete(ctx, "order-42", c.Token, []byte(`{"id":42}`), 24*time.Hour); err != nil {
		log.Fatal(err)
	}

	retry, err := store.Claim(ctx, "order-42", "fingerprint", 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retry acquired:", retry.Acquired, "replays:", string(retry.Record.Response))
	// Output:
	// first claim acquired: true
	// retry acquired: false replays: {"id":42}
}

// The transactional path: the middleware claims the key in a transaction,
// the handler writes in the same transaction (idempotency.TxFrom), and the
// record and the order commit together, once.
func Example_transactional() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()
	store, _ := sqlstore.New(db, steadfast.SQLite)
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}

	mw, err := idempotency.Middleware(store, idempotency.WithTransaction())
	if err != nil {
		log.Fatal(err)
	}
	orders := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := idempotency.TxFrom(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if _, err := tx.ExecContext(r.Context(), `INSERT INTO orders (id) VALUES ('ord_1')`); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, "ord_1")
	}))
	_ = orders // mux.Handle("POST /orders", orders)

	// The same, by hand, in a transaction of the caller's own:
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	c, err := store.ClaimIn(ctx, tx, "charge-7", "fp", 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	if c.Acquired {
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ('ord_7')`); err != nil {
			log.Fatal(err)
		}
		if err := store.CompleteIn(ctx, tx, "charge-7", c.Token, []byte("ord_7"), 24*time.Hour); err != nil {
			log.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			log.Fatal(err)
		}
	}
	var n int
	_ = db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&n)
	fmt.Println("orders:", n)
	// Output:
	// orders: 1
}

// A consumer that applies each message once, and each entity's events in
// order.
func ExampleStore_Process() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()
	store, _ := sqlstore.New(db, steadfast.SQLite)
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	handle := func(messageID string, version int64) {
		dup, err := store.Process(ctx, "billing", messageID, func(ctx context.Context, tx *sql.Tx) error {
			applied, err := store.ApplyVersion(ctx, tx, "invoice-9", version)
			if err != nil {
				return err
			}
			fmt.Printf("%s: version %d applied=%v\n", messageID, version, applied)
			return nil
		})
		if err != nil {
			log.Fatal(err)
		}
		if dup {
			fmt.Printf("%s: duplicate, skipped\n", messageID)
		}
	}
	handle("m2", 2)
	handle("m1", 1) // arrives late: stale
	handle("m2", 2) // redelivered
	// Output:
	// m2: version 2 applied=true
	// m1: version 1 applied=false
	// m2: duplicate, skipped
}

// Do in transactional mode: the charge is recorded in the same transaction
// as the key's result, so a retry after a crash replays instead of charging
// twice.
func Example_do() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()
	store, _ := sqlstore.New(db, steadfast.SQLite)
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE charges (id TEXT PRIMARY KEY, cents INTEGER)`); err != nil {
		log.Fatal(err)
	}
	runner, err := idempotency.NewRunner(store, idempotency.WithTransaction())
	if err != nil {
		log.Fatal(err)
	}
	charge := func() (string, error) {
		return idempotency.Do(ctx, runner, "charge-7", func(ctx context.Context) (string, error) {
			tx, err := idempotency.TxFrom(ctx)
			if err != nil {
				return "", err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO charges (id, cents) VALUES ('ch_7', 1999)`)
			return "ch_7", err
		})
	}
	first, err := charge()
	if err != nil {
		log.Fatal(err)
	}
	again, err := charge() // a retry: replayed, nothing inserted
	if err != nil {
		log.Fatal(err)
	}
	var n int
	_ = db.QueryRow(`SELECT COUNT(*) FROM charges`).Scan(&n)
	fmt.Println(first, again, "charges:", n)
	// Output:
	// ch_7 ch_7 charges: 1
}
