package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// idemRecord is the JSON form of an idempotency record. The stored
// response itself is not shown (it may hold what the client was answered):
// only its size and, for the HTTP middleware's, its status.
type idemRecord struct {
	Key        string  `json:"key"`
	State      string  `json:"state"`
	Token      int64   `json:"token"`
	LeftSecs   float64 `json:"left_seconds"` // of the lease (in progress) or the retention (completed)
	HTTPStatus int     `json:"http_status,omitempty"`
	TooLarge   bool    `json:"too_large,omitempty"`
	Size       int     `json:"response_bytes"`
}

// idempotency runs "idempotency get" and "idempotency release": the record
// of a key on the idempotency store's table in the same database.
func (c *cli) idempotency(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "get" && args[0] != "release") {
		return fmt.Errorf("%w: idempotency get|release [-idem-table T] [-scope S] [-method M] [-route R] KEY | -stored KEY", errUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("idempotency "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	table := fs.String("idem-table", "steadfast_idempotency", "idempotency record table")
	scope := fs.String("scope", "", "the middleware's scope (WithScope)")
	method := fs.String("method", http.MethodPost, "the request's method")
	route := fs.String("route", "", "the request's route")
	stored := fs.String("stored", "", "the key as stored (instead of scope, method, route and KEY)")
	yes := fs.Bool("yes", false, "do not ask for confirmation (release)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: idempotency %s: %v", errUsage, sub, err)
	}
	key := *stored
	switch {
	case key != "" && fs.NArg() == 0:
	case key == "" && fs.NArg() == 1:
		key = idempotency.ScopedKey(*scope, *method, *route, fs.Arg(0))
	default:
		return fmt.Errorf("%w: idempotency %s takes one KEY, or -stored KEY", errUsage, sub)
	}
	store, err := sqlstore.New(c.db, c.dialect, sqlstore.WithTable(*table))
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if sub == "get" {
		return c.idemGet(ctx, store, key)
	}
	if !*yes && !c.ask.confirm(fmt.Sprintf("release the claim of %s? Its work may then run a second time.", strconv.Quote(key))) {
		return errNotConfirmed
	}
	err = store.ForceRelease(ctx, key)
	c.audit("idempotency-release", "idem_table="+*table+" key="+strconv.Quote(key), "released", err)
	if errors.Is(err, idempotency.ErrNotFound) {
		return fmt.Errorf("%s has no claim in progress (completed records are left alone): %w", strconv.Quote(key), err)
	}
	if err != nil {
		return err
	}
	return c.print(map[string]string{"released": key}, "released "+strconv.Quote(key)+"\n")
}

func (c *cli) idemGet(ctx context.Context, store *sqlstore.Store, key string) error {
	rec, err := store.Get(ctx, key)
	if errors.Is(err, idempotency.ErrNotFound) {
		return fmt.Errorf("%s: no live record: %w", strconv.Quote(key), err)
	}
	if err != nil {
		return err
	}
	out := idemRecord{Key: key, State: rec.Status.String(), Token: rec.Token, LeftSecs: rec.TTL.Seconds(), Size: len(rec.Response)}
	out.HTTPStatus, out.TooLarge = httpStatus(rec.Response)
	if c.json {
		return c.print(out, "")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "key\t%s\nstate\t%s\ntoken\t%d\n", strconv.Quote(key), out.State, rec.Token)
	switch {
	case rec.Status == idempotency.StatusInProgress && rec.TTL <= 0:
		b.WriteString("lease left\tnone: expired, the next claimer takes it over\n")
	case rec.Status == idempotency.StatusInProgress:
		fmt.Fprintf(&b, "lease left\t%s\n", rec.TTL.Round(time.Second))
	default:
		fmt.Fprintf(&b, "retention left\t%s\n", rec.TTL.Round(time.Second))
	}
	if rec.Status == idempotency.StatusCompleted {
		switch {
		case out.HTTPStatus != 0 && out.TooLarge:
			fmt.Fprintf(&b, "stored status\t%d (response too large to keep: a marker)\n", out.HTTPStatus)
		case out.HTTPStatus != 0:
			fmt.Fprintf(&b, "stored status\t%d (%d bytes)\n", out.HTTPStatus, out.Size)
		default:
			fmt.Fprintf(&b, "stored result\t%d bytes\n", out.Size)
		}
	}
	return c.print(nil, b.String())
}

// httpStatus reads the status of a response stored by the idempotency
// middleware: a kind byte ('r' a response, 't' the marker of one too large
// to keep), then the status as a uvarint. It returns 0 for a result stored
// by idempotency.Do.
func httpStatus(b []byte) (status int, tooLarge bool) {
	if len(b) < 2 || (b[0] != 'r' && b[0] != 't') {
		return 0, false
	}
	st, n := binary.Uvarint(b[1:])
	if n <= 0 || st < 100 || st > 599 {
		return 0, false
	}
	return int(st), b[0] == 't'
}
