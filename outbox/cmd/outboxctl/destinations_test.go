package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// ctlIn runs outboxctl as on a terminal whose operator types input.
func ctlIn(t *testing.T, input string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runIO(context.Background(), args, strings.NewReader(input), true, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDestinationStatsAndList(t *testing.T) {
	t.Parallel()
	path, dead, _ := setup(t)
	base := []string{"-db", "sqlite", "-dsn", path}
	code, out, errOut := ctl(t, append(base, "stats", "-by", "destination")...)
	if code != 0 {
		t.Fatalf("stats -by destination: exit %d: %s", code, errOut)
	}
	for _, s := range []string{"TOPIC", "IN FLIGHT", "emails", "partner-a"} {
		if !strings.Contains(out, s) {
			t.Errorf("stats -by destination: output %q lacks %q", out, s)
		}
	}
	code, out, _ = ctl(t, append(base, "-json", "stats", "-by", "destination")...)
	var sts []destStats
	if code != 0 || json.Unmarshal([]byte(out), &sts) != nil {
		t.Fatalf("stats -by destination -json: exit %d: %s", code, out)
	}
	want := []destStats{
		{Topic: "emails", Destination: "emails", Dead: 1},
		{Topic: "invoices", Destination: "invoices", Pending: 1, Dead: 1},
		{Topic: "invoices", Destination: "partner-a", Pending: 1},
	}
	if len(sts) != len(want) {
		t.Fatalf("stats -by destination -json = %+v; want %+v", sts, want)
	}
	for i, w := range want {
		g := sts[i]
		if (w.Pending > 0) != (g.OldestPendingAge > 0) {
			t.Errorf("row %d: oldest pending age %v with %d pending", i, g.OldestPendingAge, g.Pending)
		}
		g.OldestPendingAge = 0
		if g != w {
			t.Errorf("row %d = %+v; want %+v", i, g, w)
		}
	}
	if code, _, _ := ctl(t, append(base, "stats", "-by", "topic")...); code != 2 {
		t.Errorf("stats -by topic: exit %d, want 2", code)
	}
	code, out, _ = ctl(t, append(base, "list", "-destination", "emails")...)
	if code != 0 || !strings.Contains(out, dead[1]) || strings.Contains(out, dead[0]) {
		t.Errorf("list -destination emails: exit %d, %q; want only %s", code, out, dead[1])
	}
	code, out, _ = ctl(t, append(base, "list", "-destination", "emails", "-topic", "invoices")...)
	if code != 0 || strings.Contains(out, dead[1]) || strings.Contains(out, dead[0]) {
		t.Errorf("list -destination emails -topic invoices: exit %d, %q; want none", code, out)
	}
}

func TestDiscardAsksOnATerminal(t *testing.T) {
	t.Parallel()
	path, dead, _ := setup(t)
	base := []string{"-db", "sqlite", "-dsn", path, "-who", "alice"}
	code, out, errOut := ctlIn(t, "n\n", append(base, "discard", dead[0], dead[1])...)
	if code != 1 || !strings.Contains(errOut, "discard 2 dead letters for good? [y/N]") || strings.Contains(out, "discarded") {
		t.Errorf("discard answered n: exit %d, out %q, err %q; want the question and nothing discarded", code, out, errOut)
	}
	if strings.Contains(errOut, "audit") {
		t.Errorf("discard answered n: an audit line %q for nothing done", errOut)
	}
	code, out, errOut = ctlIn(t, "y\n", append(base, "discard", dead[0])...)
	if code != 0 || !strings.Contains(out, "discarded 1 of 1") {
		t.Errorf("discard answered y: exit %d, out %q, err %q", code, out, errOut)
	}
	if !strings.Contains(errOut, `who="alice" action=discard`) || !strings.Contains(errOut, dead[0]) || strings.Count(errOut, "outboxctl audit:") != 1 {
		t.Errorf("discard: audit line %q; want one naming alice, the action and the id", errOut)
	}
	code, out, errOut = ctlIn(t, "", append(base, "discard", "-yes", dead[1])...)
	if code != 0 || !strings.Contains(out, "discarded 1 of 1") || strings.Contains(errOut, "[y/N]") {
		t.Errorf("discard -yes: exit %d, out %q, err %q; want no question", code, out, errOut)
	}
	code, _, errOut = ctlIn(t, "", append(base, "-yes", "resume", "partner-a")...)
	if code != 0 || !strings.Contains(errOut, `who="alice" action=resume table=steadfast_outbox destinations="partner-a" result=ok "resumed 1 of 1"`) {
		t.Errorf("resume: exit %d, audit %q", code, errOut)
	}
}

func TestAuditWhoDefaultsToUser(t *testing.T) {
	t.Setenv("USER", "bob")
	path, dead, _ := setup(t)
	code, _, errOut := ctl(t, "-db", "sqlite", "-dsn", path, "requeue", dead[0])
	if code != 0 || !strings.Contains(errOut, `who="bob" action=requeue`) {
		t.Errorf("requeue: exit %d, audit %q; want who=\"bob\"", code, errOut)
	}
}

func TestIdempotencyGetAndRelease(t *testing.T) {
	t.Parallel()
	path, _, _ := setup(t)
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	st, err := sqlstore.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	stuck := idempotency.ScopedKey("acme", "POST", "/orders", "k-stuck")
	if c, err := st.Claim(ctx, stuck, "fp", time.Hour); err != nil || !c.Acquired {
		t.Fatalf("claim: %+v, %v", c, err)
	}
	done := idempotency.ScopedKey("", "POST", "/orders", "k-done")
	c, err := st.Claim(ctx, done, "fp", time.Hour)
	if err != nil || !c.Acquired {
		t.Fatalf("claim: %+v, %v", c, err)
	}
	resp := binary.AppendUvarint([]byte{'r'}, 201)
	resp = append(resp, "body"...)
	if err := st.Complete(ctx, done, c.Token, resp, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	db.Close()

	base := []string{"-db", "sqlite", "-dsn", path, "-who", "carol"}
	code, out, errOut := ctl(t, append(base, "idempotency", "get", "-scope", "acme", "-route", "/orders", "k-stuck")...)
	if code != 0 || !strings.Contains(out, "state\tin_progress") || !strings.Contains(out, "lease left\t") {
		t.Errorf("get stuck: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut = ctl(t, append(base, "-json", "idempotency", "get", "-route", "/orders", "k-done")...)
	var rec idemRecord
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || rec.State != "completed" || rec.HTTPStatus != 201 ||
		rec.LeftSecs < 23*3600 || rec.Key != done {
		t.Errorf("get done -json: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = ctl(t, append(base, "idempotency", "get", "-stored", done)...)
	if code != 0 || !strings.Contains(out, "stored status\t201") || !strings.Contains(out, "retention left") {
		t.Errorf("get -stored: exit %d, out %q", code, out)
	}
	if code, _, _ := ctl(t, append(base, "idempotency", "get", "-route", "/orders", "nope")...); code != 1 {
		t.Errorf("get unknown: exit %d, want 1", code)
	}
	if code, _, _ := ctl(t, append(base, "idempotency", "get")...); code != 2 {
		t.Errorf("get without a key: exit %d, want 2", code)
	}

	// Release asks on a terminal; n keeps the claim.
	rel := append(base, "idempotency", "release", "-scope", "acme", "-route", "/orders", "k-stuck")
	code, _, errOut = ctlIn(t, "n\n", rel...)
	if code != 1 || !strings.Contains(errOut, "[y/N]") || strings.Contains(errOut, "audit") {
		t.Errorf("release answered n: exit %d, err %q", code, errOut)
	}
	code, out, errOut = ctlIn(t, "y\n", rel...)
	if code != 0 || !strings.Contains(out, "released") || !strings.Contains(errOut, `who="carol" action=idempotency-release`) {
		t.Errorf("release answered y: exit %d, out %q, err %q", code, out, errOut)
	}
	if code, _, _ := ctl(t, append(base, "idempotency", "get", "-scope", "acme", "-route", "/orders", "k-stuck")...); code != 1 {
		t.Errorf("get after release: exit %d, want 1 (no record)", code)
	}
	// A completed record is left alone.
	code, _, errOut = ctl(t, append(base, "idempotency", "release", "-yes", "-stored", done)...)
	if code != 1 || !strings.Contains(errOut, "no claim in progress") || !strings.Contains(errOut, "result=error") {
		t.Errorf("release completed: exit %d, err %q", code, errOut)
	}
}
