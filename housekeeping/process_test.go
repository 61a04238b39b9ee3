package housekeeping_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/housekeeping"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// childVar, when set, makes the test binary a sweeping process: it sweeps
// the SQLite file named by it once and prints how many rows it removed.
const childVar = "HOUSEKEEPING_CHILD_DB"

func child() int {
	path, prefix := os.Getenv(childVar), os.Getenv("HOUSEKEEPING_CHILD_PREFIX")
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(path))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer db.Close()
	idem, err := sqlstore.New(db, steadfast.SQLite, sqlstore.WithTable(prefix+"_idem"))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	s, err := housekeeping.New(db, steadfast.SQLite, housekeeping.WithTable(prefix+"_lease"),
		housekeeping.WithIdempotency(idem), housekeeping.WithBatchSize(5), housekeeping.WithInterval(time.Hour), housekeeping.WithLogger(quiet()))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if err := s.Migrate(context.Background()); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	n, err := s.Sweep(context.Background())
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("removed", n)
	return 0
}

// TestProcessesShareOneSQLiteFile: four processes sweep one SQLite file at
// once. The lease lives in the file, on SQLite's clock, so one of them
// sweeps and the others find the lease held; together they remove exactly
// the expired records.
func TestProcessesShareOneSQLiteFile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	path := filepath.Join(t.TempDir(), "shared.db")
	db, err := sql.Open("sqlite", steadfast.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prefix := "shared"
	idem, err := sqlstore.New(db, steadfast.SQLite, sqlstore.WithTable(prefix+"_idem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := idem.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		keep := time.Hour
		if i < 43 {
			keep = time.Millisecond
		}
		k := "k" + strconv.Itoa(i)
		c, err := idem.Claim(t.Context(), k, "fp", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := idem.Complete(t.Context(), k, c.Token, []byte("x"), keep); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	var wg sync.WaitGroup
	out := make([]string, 4)
	for i := range out {
		wg.Go(func() {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childVar+"="+path, "HOUSEKEEPING_CHILD_PREFIX="+prefix)
			b, err := cmd.CombinedOutput()
			out[i] = strings.TrimSpace(string(b))
			if err != nil {
				t.Errorf("process %d: %v: %s", i, err, b)
			}
		})
	}
	wg.Wait()
	var total, sweeping int
	for _, o := range out {
		var n int
		if _, err := fmt.Sscanf(o, "removed %d", &n); err != nil {
			t.Fatalf("process said %q", o)
		}
		total += n
		if n > 0 {
			sweeping++
		}
	}
	if total != 43 || sweeping != 1 {
		t.Fatalf("processes removed %v, want 43 by one of them", out)
	}
	var left int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + prefix + "_idem").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 17 {
		t.Fatalf("%d records left, want the 17 not expired", left)
	}
}
