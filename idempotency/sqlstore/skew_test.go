package sqlstore_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/idempotency/sqlstore"
)

// Issue 12 item 9: two replicas whose application clocks differ by 60 s
// never take over each other's live claim (30 s lease). The store used to
// stamp and compare leases with the application's clock (WithClock), so a
// replica 60 s ahead took over at once; now every time is the statement's
// on the database server, so the replicas' own clocks play no part, which
// TestNoApplicationClock keeps true. Replica B here is a second store on
// the same tables, driven by a Runner whose wait would run the work again
// if B thought the lease had run out.
func TestSkewedClocksNeverTakeOverLiveClaim(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d steadfast.Dialect) {
		ctx := context.Background()
		db := openDB(t, d, 4)
		a := newStoreOn(t, db, d)
		b, err := sqlstore.New(db, d, sqlstore.WithTable(a.Table()))
		if err != nil {
			t.Fatal(err)
		}
		const lease = 30 * time.Second
		c, err := a.Claim(ctx, "k", "", lease)
		if err != nil || !c.Acquired {
			t.Fatalf("A's claim = %+v, %v", c, err)
		}
		c2, err := b.Claim(ctx, "k", "", lease)
		if err != nil || c2.Acquired {
			t.Fatalf("B claimed A's live claim: %+v, %v", c2, err)
		}
		if c2.Record.Status != idempotency.StatusInProgress || c2.Record.TTL <= 20*time.Second || c2.Record.TTL > lease {
			t.Fatalf("B sees %+v; want in progress with about %v of lease left", c2.Record, lease)
		}
		r, err := idempotency.NewRunner(b, idempotency.WithWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ran := false
		_, err = idempotency.Do(ctx, r, "k", func(context.Context) (int, error) { ran = true; return 1, nil })
		if ran || !errors.Is(err, idempotency.ErrInProgress) {
			t.Fatalf("B's Do ran %v, err %v; want the work not run", ran, err)
		}
		if err := a.Complete(ctx, "k", c.Token, []byte("a"), time.Hour); err != nil {
			t.Fatalf("A's completion after B's attempts: %v", err)
		}
	})
}

// TestNoApplicationClock: the store's code never reads the process's clock
// (time.Now, time.Since, time.Until): every time it keeps or compares is the
// database's. Test files may.
func TestNoApplicationClock(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" {
				switch sel.Sel.Name {
				case "Now", "Since", "Until":
					t.Errorf("%s: time.%s: the store must not read the application's clock", fset.Position(sel.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
	}
}
