package ops_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/testenv"
	"github.com/steadfast-go/steadfast/ops"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"github.com/steadfast-go/steadfast/retry"
)

// countingStore is a real store that counts the page's ListDead calls, to
// see the destination filter go to ListDeadByDestination instead.
type countingStore struct {
	*sqloutbox.Store
	listDead atomic.Int32
}

func (s *countingStore) ListDead(ctx context.Context, topic string, after int64, limit int) ([]outbox.Record, error) {
	s.listDead.Add(1)
	return s.Store.ListDead(ctx, topic, after, limit)
}

// holdingPublisher holds tenant-a's messages until released (in flight),
// refuses invoices for good (dead letters) and delivers the rest.
type holdingPublisher struct {
	held    chan struct{}
	release chan struct{}
}

func (p *holdingPublisher) Publish(ctx context.Context, d outbox.Delivery) error {
	switch {
	case d.Destination == "tenant-a":
		p.held <- struct{}{}
		select {
		case <-p.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	case d.Topic == "invoices":
		return retry.Permanent(errors.New("422 Unprocessable Entity"))
	}
	return nil
}

var (
	cellRE = regexp.MustCompile(`(?s)<td data-label="([^"]+)"[^>]*>(.*?)</td>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// backlogRows reads the overview's backlog table: one map of column label
// to cell text per line.
func backlogRows(t *testing.T, page string) []map[string]string {
	t.Helper()
	i := strings.Index(page, `id="backlog"`)
	if i < 0 {
		t.Fatalf("no backlog section:\n%s", page)
	}
	page = page[i:]
	page = page[:strings.Index(page, "</section>")]
	var rows []map[string]string
	for _, tr := range strings.Split(page, "<tr")[1:] {
		cells := cellRE.FindAllStringSubmatch(tr, -1)
		if len(cells) == 0 {
			continue
		}
		row := map[string]string{}
		for _, c := range cells {
			row[c[1]] = strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(c[2], "")))
		}
		rows = append(rows, row)
	}
	return rows
}

// TestBacklogByDestination: with a store that counts per topic and
// destination (sqloutbox), the overview shows one line each with its
// pending, in flight, dead and oldest pending age, and the dead letters of
// a destination are filtered by the store (ListDeadByDestination, not
// pages of ListDead read through). A store without those methods still
// shows its totals and filters by destination itself.
func TestBacklogByDestination(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		db, err := sql.Open("sqlite", steadfast.SQLiteDSN(filepath.Join(t.TempDir(), "outbox.db")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		store, err := sqloutbox.New(db, steadfast.SQLite)
		if err != nil {
			t.Fatal(err)
		}
		testBacklogByDestination(t, store)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		db, err := sql.Open("pgx", testenv.PostgresURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		var b [5]byte
		_, _ = rand.Read(b[:])
		table := "ops_dest_" + hex.EncodeToString(b[:])
		store, err := sqloutbox.New(db, steadfast.Postgres, sqloutbox.WithTable(table), sqloutbox.WithoutNotify())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			rows, err := db.Query(`SELECT tablename FROM pg_tables WHERE tablename LIKE $1`, table+"%")
			if err != nil {
				return
			}
			var names []string
			for rows.Next() {
				var n string
				_ = rows.Scan(&n)
				names = append(names, n)
			}
			rows.Close()
			for _, n := range names {
				_, _ = db.Exec("DROP TABLE IF EXISTS " + n + " CASCADE")
			}
		})
		testBacklogByDestination(t, store)
	})
}

func testBacklogByDestination(t *testing.T, store *sqloutbox.Store) {
	ctx := t.Context()
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []outbox.Message
	for i := range 3 {
		msgs = append(msgs, outbox.Message{Topic: "orders", Destination: "tenant-a", Key: fmt.Sprintf("a-%d", i), Payload: []byte(`{}`)})
	}
	for i := range 2 {
		msgs = append(msgs, outbox.Message{Topic: "orders", Destination: "tenant-b", Key: fmt.Sprintf("b-%d", i), Payload: []byte(`{}`),
			NotBefore: time.Now().Add(time.Hour)})
	}
	for i := range 2 {
		msgs = append(msgs, outbox.Message{Topic: "invoices", Key: fmt.Sprintf("inv-%d", i), Payload: []byte(`{}`)})
	}
	if err := store.EnqueueWithoutTx(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	pub := &holdingPublisher{held: make(chan struct{}, 3), release: make(chan struct{})}
	relay, err := outbox.NewRelay(store, pub, outbox.WithPollInterval(20*time.Millisecond), outbox.WithConcurrency(8),
		outbox.WithDestinationConcurrency(4), outbox.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	released := false
	stop := func() {
		if !released {
			close(pub.release)
			released = true
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = relay.Stop(sctx)
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for held := 0; ; {
		for len(pub.held) > 0 {
			<-pub.held
			held++
		}
		st, err := store.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if held == 3 && st.Dead == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not settle: %d held, %+v", held, st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cs := &countingStore{Store: store}
	page, err := ops.New(ops.WithOutbox(cs))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, page)
	_, body := get(t, srv.URL+"/ops/")
	if !strings.Contains(body, "<strong>5</strong> pending (3 in flight)") || !strings.Contains(body, "<strong>2</strong> dead") {
		t.Errorf("the summary lacks the totals with those in flight:\n%s", body)
	}
	got := map[string]map[string]string{}
	for _, row := range backlogRows(t, body) {
		got[row["Topic"]+"/"+row["Destination"]] = row
	}
	want := map[string][4]string{ // pending, in flight, dead, oldest pending ("" any age)
		"orders/tenant-a":   {"3", "3", "0", ""},
		"orders/tenant-b":   {"2", "0", "0", ""},
		"invoices/invoices": {"0", "0", "2", "—"},
	}
	if len(got) != len(want) {
		t.Errorf("backlog lines: %v, want %d", got, len(want))
	}
	for k, w := range want {
		row, ok := got[k]
		if !ok {
			t.Errorf("no backlog line for %s: %v", k, got)
			continue
		}
		if row["Pending"] != w[0] || row["In flight"] != w[1] || row["Dead"] != w[2] {
			t.Errorf("%s: pending %q, in flight %q, dead %q; want %q, %q, %q", k, row["Pending"], row["In flight"], row["Dead"], w[0], w[1], w[2])
		}
		if w[3] == "" && (row["Oldest pending"] == "" || row["Oldest pending"] == "—") || w[3] != "" && row["Oldest pending"] != w[3] {
			t.Errorf("%s: oldest pending %q", k, row["Oldest pending"])
		}
	}
	if !strings.Contains(body, `href="dead?topic=invoices&amp;destination=invoices"`) {
		t.Error("the dead count does not link to the destination's dead letters")
	}

	// The destination filter is the store's.
	_, body = get(t, srv.URL+"/ops/dead?destination=invoices")
	if n := strings.Count(body, `href="message?id=`); n != 2 {
		t.Errorf("dead letters of invoices: %d, want 2", n)
	}
	_, body = get(t, srv.URL+"/ops/dead?destination=tenant-a&topic=orders")
	if n := strings.Count(body, `href="message?id=`); n != 0 || !strings.Contains(body, "No dead letters match this filter") {
		t.Errorf("dead letters of tenant-a: %d, want none", n)
	}
	if n := cs.listDead.Load(); n != 0 {
		t.Errorf("the destination filter read %d pages of ListDead, want none (ListDeadByDestination)", n)
	}

	// A store with only OutboxStore's methods: its totals, and the page's
	// own filter.
	page, err = ops.New(ops.WithOutbox(struct{ ops.OutboxStore }{store}))
	if err != nil {
		t.Fatal(err)
	}
	srv = serve(t, page)
	_, body = get(t, srv.URL+"/ops/")
	rows := backlogRows(t, body)
	if len(rows) != 1 || rows[0]["Topic"] != "all topics" || rows[0]["Pending"] != "5" || rows[0]["In flight"] != "—" || rows[0]["Dead"] != "2" {
		t.Errorf("totals of a store without StatsByDestination: %v", rows)
	}
	if !strings.Contains(body, `href="dead?topic=&amp;destination="`) {
		t.Error("the totals' dead count does not link to every dead letter")
	}
	_, body = get(t, srv.URL+"/ops/dead?destination=invoices")
	if n := strings.Count(body, `href="message?id=`); n != 2 {
		t.Errorf("dead letters of invoices, filtered by the page: %d, want 2", n)
	}
	stop()
}
