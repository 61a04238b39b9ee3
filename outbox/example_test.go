package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
)

type printPublisher struct {
	mu   sync.Mutex
	n    int
	done chan struct{}
}

func (p *printPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Printf("%s %s %s (attempt %d)\n", d.Topic, d.Key, d.Payload, d.Attempt)
	if p.n++; p.n == 2 {
		close(p.done)
	}
	return nil
}

// The order service writes the order and its event in one transaction; a
// relay delivers the event once the transaction has committed. Events of
// one key (here the order) arrive in commit order.
func Example() {
	dir, _ := os.MkdirTemp("", "outbox-example")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(dir, "app.db")))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	store, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, status TEXT)`); err != nil {
		log.Fatal(err)
	}

	for _, status := range []string{"placed", "paid"} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO orders (id, status) VALUES ('o-1', ?)
			ON CONFLICT (id) DO UPDATE SET status = excluded.status`, status); err != nil {
			log.Fatal(err)
		}
		if err := store.Enqueue(ctx, tx, outbox.Message{
			Topic: "orders", Key: "o-1", Payload: []byte(`{"status":"` + status + `"}`),
		}); err != nil {
			log.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			log.Fatal(err)
		}
	}

	pub := &printPublisher{done: make(chan struct{})}
	relay, err := outbox.NewRelay(store, pub)
	if err != nil {
		log.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		log.Fatal(err)
	}
	<-pub.done
	if err := relay.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// orders o-1 {"status":"placed"} (attempt 1)
	// orders o-1 {"status":"paid"} (attempt 1)
}
