package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/outbox/sqloutbox"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup makes a SQLite outbox with two dead letters and one pending message.
func setup(t *testing.T) (path string, dead []string, pending string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "app.db")
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	s, err := sqloutbox.New(db, steadfast.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tx, _ := db.Begin()
	if err := s.Enqueue(ctx, tx,
		outbox.Message{Topic: "invoices", Key: "c-1", Payload: []byte(`{"n":1}`), Headers: map[string]string{"h": "v"}},
		outbox.Message{Topic: "emails", Payload: []byte{0xff, 0xfe}}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	var outs []backend.Outcome
	err = s.Claim(ctx, backend.ClaimRequest{Limit: 10, Lease: time.Minute}, func(d outbox.Delivery, c backend.Claim) {
		outs = append(outs, backend.Outcome{Position: d.Position, Token: c.Token, Kind: backend.Dead, Error: "410 Gone\nfrom " + d.Topic})
		dead = append(dead, d.ID)
	})
	if err != nil || len(outs) != 2 {
		t.Fatalf("claim %d, %v", len(outs), err)
	}
	if refused, err := s.Settle(ctx, outs); err != nil || len(refused) > 0 {
		t.Fatal(err, refused)
	}
	// A destination paused by a 410, with a message held behind the pause.
	tx, _ = db.Begin()
	if err := s.Enqueue(ctx, tx, outbox.Message{Topic: "invoices", Destination: "partner-a"}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	outs = outs[:0]
	err = s.Claim(ctx, backend.ClaimRequest{Limit: 10, Lease: time.Minute}, func(d outbox.Delivery, c backend.Claim) {
		outs = append(outs, backend.Outcome{Position: d.Position, Token: c.Token, Kind: backend.Pause, Delay: time.Hour, Error: "410 Gone"})
	})
	if err != nil || len(outs) != 1 {
		t.Fatalf("claim %d, %v", len(outs), err)
	}
	if refused, err := s.Settle(ctx, outs); err != nil || len(refused) > 0 {
		t.Fatal(err, refused)
	}
	tx, _ = db.Begin()
	pending = "0190d8a2-0000-7000-8000-00000000cafe"
	if err := s.Enqueue(ctx, tx, outbox.Message{ID: pending, Topic: "invoices"}); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	return path, dead, pending
}

func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runIO(context.Background(), args, strings.NewReader(""), false, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCommands(t *testing.T) {
	t.Parallel()
	path, dead, pending := setup(t)
	base := []string{"-db", "sqlite", "-dsn", path}
	cases := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"stats", []string{"stats"}, 0, []string{"pending\t2", "dead letters\t2"}},
		{"pauses", []string{"pauses"}, 0, []string{"DESTINATION", "partner-a", "410 Gone"}},
		{"resume nothing", []string{"resume"}, 2, nil},
		{"resume", []string{"resume", "partner-a", "partner-b"}, 0, []string{"resumed 1 of 2 (the others were not paused)"}},
		{"pauses after", []string{"pauses"}, 0, []string{"DESTINATION"}},
		{"list", []string{"list"}, 0, []string{"POSITION", dead[0], dead[1], "410 Gone from invoices"}},
		{"list topic", []string{"list", "-topic", "emails"}, 0, []string{dead[1]}},
		{"inspect", []string{"inspect", dead[0]}, 0, []string{"state\tdead", `payload	{"n":1}`, "header\th: v", "key\tc-1"}},
		{"inspect binary", []string{"inspect", dead[1]}, 0, []string{"2 bytes, not UTF-8"}},
		{"inspect unknown", []string{"inspect", "0190d8a2-0000-7000-8000-000000000000"}, 1, nil},
		{"requeue one dead, one pending", []string{"requeue", dead[0], pending}, 0, []string{"requeued 1 of 2 (the others are not dead letters)"}},
		{"discard", []string{"discard", dead[1]}, 0, []string{"discarded 1 of 1"}},
		{"stats after", []string{"stats"}, 0, []string{"pending\t3", "dead letters\t0"}},
		{"no command", nil, 2, nil},
		{"unknown command", []string{"frobnicate"}, 2, nil},
		{"requeue nothing", []string{"requeue"}, 2, nil},
		{"bad id", []string{"requeue", "nope"}, 1, nil},
	}
	for _, c := range cases { // in order: later cases see earlier changes
		code, out, errOut := ctl(t, append(base, c.args...)...)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.name, code, c.code, errOut)
		}
		for _, s := range c.contains {
			if !strings.Contains(out, s) {
				t.Errorf("%s: output %q lacks %q", c.name, out, s)
			}
		}
	}
	if code, _, _ := ctl(t, "-db", "oracle", "-dsn", "x", "stats"); code != 2 {
		t.Errorf("-db oracle: exit %d, want 2", code)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.db")
	base := []string{"-db", "sqlite", "-dsn", path, "-table", "events"}
	if code, out, errOut := ctl(t, append(base, "migrate")...); code != 0 || !strings.Contains(out, "migrated events") {
		t.Fatalf("migrate: %d %q %q", code, out, errOut)
	}
	if code, out, _ := ctl(t, append(base, "stats")...); code != 0 || !strings.Contains(out, "pending\t0") {
		t.Errorf("stats after migrate: %d %q", code, out)
	}
	if code, _, _ := ctl(t, "-db", "sqlite", "-dsn", path, "-table", "no such table!", "stats"); code != 2 {
		t.Errorf("bad -table: exit %d, want 2", code)
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	path, dead, _ := setup(t)
	code, out, errOut := ctl(t, "-db", "sqlite", "-dsn", path, "-json", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var recs []record
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != dead[0] || recs[0].State != "dead" || recs[0].DoneAt == nil {
		t.Errorf("list -json = %+v", recs)
	}
	code, out, _ = ctl(t, "-db", "sqlite", "-dsn", path, "-json", "inspect", dead[1])
	var r record
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !bytes.Equal(r.Payload, []byte{0xff, 0xfe}) {
		t.Errorf("inspect -json = %d %s", code, out)
	}
	code, out, _ = ctl(t, "-db", "sqlite", "-dsn", path, "-json", "stats")
	var st map[string]float64
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st["dead"] != 2 || st["pending"] != 2 {
		t.Errorf("stats -json = %d %s", code, out)
	}
	code, out, _ = ctl(t, "-db", "sqlite", "-dsn", path, "-json", "pauses")
	var ps []pause
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 1 || ps[0].Destination != "partner-a" ||
		ps[0].Reason != "410 Gone" || time.Until(ps[0].Until) < 50*time.Minute {
		t.Errorf("pauses -json = %d %s", code, out)
	}
}
