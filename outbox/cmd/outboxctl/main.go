// Command outboxctl lets an operator look at an outbox table, handle its
// dead letters, lift the pauses of its destinations and release stuck
// idempotency claims: the actions of the operator's page (package ops).
//
// Usage:
//
//	outboxctl -db postgres -dsn "$DATABASE_URL" [-table steadfast_outbox] [-json] [-who NAME] [-yes] <command> [args]
//
// Commands:
//
//	stats [-by destination]       pending messages, age of the oldest, dead letters
//	                              (per topic and destination: also in flight)
//	list [-topic T] [-destination D] [-after P] [-limit N]
//	                              dead letters in position order (page with -after)
//	inspect ID                    one message, in any state, with its payload
//	requeue ID...                 make dead letters pending again, atomically
//	discard [-yes] ID...          delete dead letters (asks first on a terminal)
//	pauses                        paused destinations, until when, and why
//	resume DESTINATION...         lift pauses: the messages are deliverable at once
//	migrate                       create the table and its indexes
//	idempotency get [-idem-table T] [-scope S] [-method POST] [-route R] KEY
//	idempotency get [-idem-table T] -stored STOREDKEY
//	                              an idempotency record: state, lease or
//	                              retention left, stored HTTP status
//	idempotency release [-yes] ...
//	                              release a claim in progress whatever its holder
//	                              (same flags as get; asks first on a terminal)
//
// -db is postgres (pgx), sqlite (modernc.org/sqlite; -dsn is a file path) or
// mysql (go-sql-driver/mysql). -dsn defaults to $OUTBOX_DSN. Every action
// that changes something (requeue, discard, resume, migrate, idempotency
// release) prints one audit line to stderr naming who did it (-who, default
// $USER), what and the outcome. The exit status is 0 on success, 1 on
// failure and 2 on bad usage.
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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/steadfast-go/steadfast"
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

const usage = `usage: outboxctl -db postgres|sqlite|mysql -dsn DSN [-table NAME] [-json] [-who NAME] [-yes] <command> [args]

commands:
  stats [-by destination]                backlog and dead letters (per topic and destination)
  list [-topic T] [-destination D] [-after P] [-limit N]
                                         dead letters, in position order
  inspect ID                             one message, in any state
  requeue ID...                          make dead letters pending again (atomic)
  discard [-yes] ID...                   delete dead letters (asks on a terminal)
  pauses                                 paused destinations, until when, and why
  resume DESTINATION...                  lift pauses (the messages are deliverable at once)
  migrate                                create the table and its indexes
  idempotency get [-idem-table T] [-scope S] [-method POST] [-route R] KEY | -stored KEY
                                         an idempotency record and its stored status
  idempotency release [-yes] (same flags as get)
                                         release a claim in progress (asks on a terminal)

Actions print an audit line to stderr with who did them (-who, default $USER).
`

// errUsage marks errors that are the caller's mistake (exit status 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runIO(ctx, args, os.Stdin, stdinIsTerminal(), stdout, stderr)
}

// stdinIsTerminal reports whether standard input is a terminal, where
// destructive commands ask before acting.
func stdinIsTerminal() bool {
	fi, err := os.Stdin.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// runIO is run with its input: stdin answers the confirmations, asked only
// when interactive.
func runIO(ctx context.Context, args []string, stdin io.Reader, interactive bool, stdout, stderr io.Writer) int {
	err := runErr(ctx, args, &prompter{in: stdin, interactive: interactive, out: stderr}, stdout, stderr)
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

func runErr(ctx context.Context, args []string, ask *prompter, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outboxctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	dbKind := fs.String("db", "postgres", "database: postgres, sqlite or mysql")
	dsn := fs.String("dsn", os.Getenv("OUTBOX_DSN"), "data source name (default $OUTBOX_DSN)")
	table := fs.String("table", "steadfast_outbox", "outbox table")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	who := fs.String("who", os.Getenv("USER"), "who is acting, for the audit lines (default $USER)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
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
	var dialect steadfast.Dialect
	switch *dbKind {
	case "postgres", "postgresql", "pgx":
		driver, dialect = "pgx", steadfast.Postgres
	case "sqlite":
		driver, dialect = "sqlite", steadfast.SQLite
		if !strings.HasPrefix(*dsn, "file:") {
			*dsn = steadfast.SQLiteDSN(*dsn)
		}
	case "mysql", "mariadb":
		driver, dialect = "mysql", steadfast.MySQL
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
	whoName := *who
	if whoName == "" {
		whoName = "unknown"
	}
	ask.yes = *yes
	c := &cli{store: store, db: db, dialect: dialect, out: stdout, errOut: stderr, json: *asJSON, who: whoName, table: store.Table(), ask: ask}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "stats":
		return c.stats(ctx, rest, stderr)
	case "list":
		return c.list(ctx, rest, stderr)
	case "inspect":
		return c.inspect(ctx, rest)
	case "requeue":
		return c.change(ctx, "requeue", "requeued", rest, store.Requeue)
	case "discard":
		return c.discard(ctx, rest, stderr)
	case "pauses":
		return c.pauses(ctx, rest)
	case "idempotency":
		return c.idempotency(ctx, rest, stderr)
	case "resume":
		if len(rest) == 0 {
			return fmt.Errorf("%w: name at least one destination", errUsage)
		}
		n, err := store.Resume(ctx, rest...)
		c.audit("resume", "destinations="+strconv.Quote(strings.Join(rest, ",")), fmt.Sprintf("resumed %d of %d", n, len(rest)), err)
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
		err := store.Migrate(ctx)
		c.audit("migrate", "", "migrated", err)
		if err != nil {
			return err
		}
		return c.print(map[string]string{"migrated": store.Table()}, "migrated "+store.Table()+"\n")
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

type cli struct {
	store   *sqloutbox.Store
	db      *sql.DB
	dialect steadfast.Dialect
	out     io.Writer
	errOut  io.Writer // audit lines
	json    bool
	who     string
	table   string
	ask     *prompter
}

// audit prints the one audit line of an action to stderr: when, who, what,
// on which table, and the outcome (or the error).
func (c *cli) audit(action, detail, outcome string, err error) {
	result := "ok " + strconv.Quote(outcome)
	if err != nil {
		result = "error " + strconv.Quote(err.Error())
	}
	if detail != "" {
		detail = " " + detail
	}
	fmt.Fprintf(c.errOut, "outboxctl audit: time=%s who=%s action=%s table=%s%s result=%s\n",
		time.Now().UTC().Format(time.RFC3339), strconv.Quote(c.who), action, c.table, detail, result)
}

// prompter asks for confirmation on a terminal unless -yes was given.
type prompter struct {
	in          io.Reader
	out         io.Writer
	interactive bool
	yes         bool
}

// confirm asks question and reports whether the answer is yes. Without a
// terminal (scripts) or with -yes it does not ask.
func (p *prompter) confirm(question string) bool {
	if p.yes || !p.interactive {
		return true
	}
	fmt.Fprintf(p.out, "%s [y/N] ", question)
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := p.in.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if err != nil {
			break
		}
	}
	a := strings.ToLower(strings.TrimSpace(string(line)))
	return a == "y" || a == "yes"
}

// errNotConfirmed is returned when the operator did not confirm.
var errNotConfirmed = errors.New("not confirmed: nothing done")

func (c *cli) discard(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("discard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: discard: %v", errUsage, err)
	}
	ids := fs.Args()
	if len(ids) == 0 {
		return fmt.Errorf("%w: name at least one message id", errUsage)
	}
	if !*yes && !c.ask.confirm(fmt.Sprintf("discard %d dead letters for good?", len(ids))) {
		return errNotConfirmed
	}
	return c.change(ctx, "discard", "discarded", ids, c.store.Discard)
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

// destStats is the JSON form of one topic and destination's backlog.
type destStats struct {
	Topic            string  `json:"topic"`
	Destination      string  `json:"destination"`
	Pending          int64   `json:"pending"`
	InFlight         int64   `json:"in_flight"`
	Dead             int64   `json:"dead"`
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
}

func (c *cli) stats(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	by := fs.String("by", "", `"destination": per topic and destination`)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: stats: %v", errUsage, err)
	}
	if fs.NArg() > 0 || (*by != "" && *by != "destination") {
		return fmt.Errorf("%w: stats takes only -by destination", errUsage)
	}
	if *by == "destination" {
		sts, err := c.store.StatsByDestination(ctx)
		if err != nil {
			return err
		}
		if c.json {
			out := make([]destStats, len(sts))
			for i, st := range sts {
				out[i] = destStats{st.Topic, st.Destination, st.Pending, st.InFlight, st.Dead, st.OldestPendingAge.Seconds()}
			}
			return c.print(out, "")
		}
		tw := tabwriter.NewWriter(c.out, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tDESTINATION\tPENDING\tIN FLIGHT\tDEAD\tOLDEST PENDING")
		for _, st := range sts {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", st.Topic, st.Destination, st.Pending, st.InFlight, st.Dead, st.OldestPendingAge.Round(time.Millisecond))
		}
		return tw.Flush()
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
	dest := fs.String("destination", "", "only this destination")
	after := fs.Int64("after", 0, "only positions above this one (paging)")
	limit := fs.Int("limit", 100, "at most this many")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: list: %v", errUsage, err)
	}
	if fs.NArg() > 0 || *limit <= 0 {
		return fmt.Errorf("%w: list takes -topic, -destination, -after and a positive -limit", errUsage)
	}
	recs, err := c.store.ListDeadByDestination(ctx, *dest, *topic, *after, *limit)
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
	fmt.Fprintln(tw, "POSITION\tID\tTOPIC\tDESTINATION\tKEY\tATTEMPTS\tDEAD SINCE\tLAST ERROR")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Position, r.ID, r.Topic, r.Destination, r.Key, r.Attempts,
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

func (c *cli) change(ctx context.Context, action, what string, ids []string, op func(context.Context, ...string) (int, error)) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: name at least one message id", errUsage)
	}
	n, err := op(ctx, ids...)
	c.audit(action, "ids="+strconv.Quote(strings.Join(ids, ",")), fmt.Sprintf("%s %d of %d", what, n, len(ids)), err)
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
