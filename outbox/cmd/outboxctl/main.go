// Command outboxctl lets an operator look at an outbox table, handle its
// dead letters and lift the pauses of its destinations: stats, list,
// inspect, requeue, discard, pauses, resume (and migrate).
//
// Usage:
//
//	outboxctl -db postgres -dsn "$DATABASE_URL" [-table steadfast_outbox] [-json] <command> [args]
//
// Commands:
//
//	stats                         pending messages, age of the oldest, dead letters
//	list [-topic T] [-after P] [-limit N]
//	                              dead letters in position order (page with -after)
//	inspect ID                    one message, in any state, with its payload
//	requeue ID...                 make dead letters pending again, atomically
//	discard ID...                 delete dead letters
//	pauses                        paused destinations, until when, and why
//	resume DESTINATION...         lift pauses: the messages are deliverable at once
//	migrate                       create the table and its indexes
//
// -db is postgres (pgx), sqlite (modernc.org/sqlite; -dsn is a file path) or
// mysql (go-sql-driver/mysql). -dsn defaults to $OUTBOX_DSN. The exit status
// is 0 on success, 1 on failure and 2 on bad usage.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	_ "modernc.org/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: outboxctl -db postgres|sqlite|mysql -dsn DSN [-table NAME] [-json] <command> [args]

commands:
  stats                                  backlog and dead letters
  list [-topic T] [-after P] [-limit N]  dead letters, in position order
  inspect ID                             one message, in any state
  requeue ID...                          make dead letters pending again (atomic)
  discard ID...                          delete dead letters
  pauses                                 paused destinations, until when, and why
  resume DESTINATION...                  lift pauses (the messages are deliverable at once)
  migrate                                create the table and its indexes
`

// errUsage marks errors that are the caller's mistake (exit status 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := runErr(ctx, args, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "outboxctl:", err)
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "outboxctl:", err)
		return 1
	}
}

func runErr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outboxctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	dbKind := fs.String("db", "postgres", "database: postgres, sqlite or mysql")
	dsn := fs.String("dsn", os.Getenv("OUTBOX_DSN"), "data source name (default $OUTBOX_DSN)")
	table := fs.String("table", "steadfast_outbox", "outbox table")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	if *dsn == "" {
		return fmt.Errorf("%w: -dsn (or $OUTBOX_DSN) is required", errUsage)
	}
	var driver string
	var dialect sqloutbox.Dialect
	switch *dbKind {
	case "postgres", "postgresql", "pgx":
		driver, dialect = "pgx", sqloutbox.Postgres
	case "sqlite":
		driver, dialect = "sqlite", sqloutbox.SQLite
		if !strings.HasPrefix(*dsn, "file:") {
			*dsn = sqloutbox.SQLiteDSN(*dsn)
		}
	case "mysql", "mariadb":
		driver, dialect = "mysql", sqloutbox.MySQL
	default:
		return fmt.Errorf("%w: -db %q: want postgres, sqlite or mysql", errUsage, *dbKind)
	}
	db, err := sql.Open(driver, *dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(2)
	store, err := sqloutbox.New(db, dialect, sqloutbox.WithTable(*table))
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &cli{store: store, out: stdout, json: *asJSON}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "stats":
		return c.stats(ctx, rest)
	case "list":
		return c.list(ctx, rest, stderr)
	case "inspect":
		return c.inspect(ctx, rest)
	case "requeue":
		return c.change(ctx, "requeued", rest, store.Requeue)
	case "discard":
		return c.change(ctx, "discarded", rest, store.Discard)
	case "pauses":
		return c.pauses(ctx, rest)
	case "resume":
		if len(rest) == 0 {
			return fmt.Errorf("%w: name at least one destination", errUsage)
		}
		n, err := store.Resume(ctx, rest...)
		if err != nil {
			return err
		}
		text := fmt.Sprintf("resumed %d of %d\n", n, len(rest))
		if n < len(rest) {
			text = fmt.Sprintf("resumed %d of %d (the others were not paused)\n", n, len(rest))
		}
		return c.print(map[string]int{"resumed": n, "named": len(rest)}, text)
	case "migrate":
		if len(rest) > 0 {
			return fmt.Errorf("%w: migrate takes no arguments", errUsage)
		}
		if err := store.Migrate(ctx); err != nil {
			return err
		}
		return c.print(map[string]string{"migrated": store.Table()}, "migrated "+store.Table()+"\n")
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

type cli struct {
	store *sqloutbox.Store
	out   io.Writer
	json  bool
}

func (c *cli) print(v any, text string) error {
	if c.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err := io.WriteString(c.out, text)
	return err
}

func (c *cli) stats(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: stats takes no arguments", errUsage)
	}
	st, err := c.store.Stats(ctx)
	if err != nil {
		return err
	}
	v := map[string]any{"pending": st.Pending, "oldest_pending_age_seconds": st.OldestPendingAge.Seconds(), "dead": st.Dead}
	return c.print(v, fmt.Sprintf("pending\t%d\noldest pending\t%s\ndead letters\t%d\n", st.Pending, st.OldestPendingAge.Round(time.Millisecond), st.Dead))
}

// record is the JSON form of a message.
type record struct {
	ID          string            `json:"id"`
	Position    int64             `json:"position"`
	Topic       string            `json:"topic"`
	Key         string            `json:"key,omitempty"`
	State       string            `json:"state"`
	Attempts    int               `json:"attempts"`
	LastError   string            `json:"last_error,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	AvailableAt time.Time         `json:"available_at"`
	DoneAt      *time.Time        `json:"done_at,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Payload     []byte            `json:"payload,omitempty"` // base64 in JSON
}

func toRecord(r outbox.Record) record {
	out := record{ID: r.ID, Position: r.Position, Topic: r.Topic, Key: r.Key, State: r.State.String(), Attempts: r.Attempts,
		LastError: r.LastError, CreatedAt: r.CreatedAt.UTC(), AvailableAt: r.AvailableAt.UTC(), Headers: r.Headers, Payload: r.Payload}
	if !r.DoneAt.IsZero() {
		d := r.DoneAt.UTC()
		out.DoneAt = &d
	}
	return out
}

func (c *cli) list(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topic := fs.String("topic", "", "only this topic")
	after := fs.Int64("after", 0, "only positions above this one (paging)")
	limit := fs.Int("limit", 100, "at most this many")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: list: %v", errUsage, err)
	}
	if fs.NArg() > 0 || *limit <= 0 {
		return fmt.Errorf("%w: list takes -topic, -after and a positive -limit", errUsage)
	}
	recs, err := c.store.ListDead(ctx, *topic, *after, *limit)
	if err != nil {
		return err
	}
	if c.json {
		out := make([]record, len(recs))
		for i, r := range recs {
			out[i] = toRecord(r)
			out[i].Payload = nil
		}
		return c.print(out, "")
	}
	tw := tabwriter.NewWriter(c.out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "POSITION\tID\tTOPIC\tKEY\tATTEMPTS\tDEAD SINCE\tLAST ERROR")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Position, r.ID, r.Topic, r.Key, r.Attempts,
			r.DoneAt.UTC().Format(time.RFC3339), oneLine(r.LastError, 80))
	}
	return tw.Flush()
}

// pause is the JSON form of a paused destination.
type pause struct {
	Destination string    `json:"destination"`
	Until       time.Time `json:"until"`
	Reason      string    `json:"reason"`
}

func (c *cli) pauses(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: pauses takes no arguments", errUsage)
	}
	ps, err := c.store.Pauses(ctx)
	if err != nil {
		return err
	}
	if c.json {
		out := make([]pause, len(ps))
		for i, p := range ps {
			out[i] = pause{Destination: p.Destination, Until: p.Until.UTC().Round(time.Second), Reason: p.Reason}
		}
		return c.print(out, "")
	}
	tw := tabwriter.NewWriter(c.out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tUNTIL\tLEFT\tREASON")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Destination, p.Until.UTC().Format(time.RFC3339), time.Until(p.Until).Round(time.Second), oneLine(p.Reason, 80))
	}
	return tw.Flush()
}

func (c *cli) inspect(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: inspect takes one message id", errUsage)
	}
	r, err := c.store.Get(ctx, args[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.print(toRecord(r), "")
	}
	var b strings.Builder
	avail := r.AvailableAt.UTC().Format(time.RFC3339Nano)
	if r.State == outbox.StatePending && r.AvailableAt.Year() > 9999 {
		avail = "after the earlier messages of its key"
	}
	fmt.Fprintf(&b, "id\t%s\nposition\t%d\ntopic\t%s\nkey\t%s\nstate\t%s\nattempts\t%d\nlast error\t%s\ncreated\t%s\navailable\t%s\n",
		r.ID, r.Position, r.Topic, r.Key, r.State, r.Attempts, r.LastError,
		r.CreatedAt.UTC().Format(time.RFC3339Nano), avail)
	if !r.DoneAt.IsZero() {
		fmt.Fprintf(&b, "done\t%s\n", r.DoneAt.UTC().Format(time.RFC3339Nano))
	}
	for k, v := range r.Headers {
		fmt.Fprintf(&b, "header\t%s: %s\n", k, v)
	}
	if utf8.Valid(r.Payload) {
		fmt.Fprintf(&b, "payload\t%s\n", r.Payload)
	} else {
		fmt.Fprintf(&b, "payload\t(%d bytes, not UTF-8; use -json for base64)\n", len(r.Payload))
	}
	return c.print(nil, b.String())
}

func (c *cli) change(ctx context.Context, what string, ids []string, op func(context.Context, ...string) (int, error)) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: name at least one message id", errUsage)
	}
	n, err := op(ctx, ids...)
	if err != nil {
		return err
	}
	text := fmt.Sprintf("%s %d of %d\n", what, n, len(ids))
	if n < len(ids) {
		text = fmt.Sprintf("%s %d of %d (the others are not dead letters)\n", what, n, len(ids))
	}
	return c.print(map[string]int{what: n, "named": len(ids)}, text)
}

func oneLine(s string, max int) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return string(r)
}
