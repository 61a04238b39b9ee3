package depcheck_test

import (
	"os/exec"
	"strings"
	"testing"
)

const (
	pgx   = "github.com/jackc/pgx/v5"
	mysql = "github.com/go-sql-driver/mysql"
	lite  = "modernc.org/sqlite"
)

// TestProgramsLinkOnlyTheirDriver lists the dependencies of two programs that
// use the idempotency store, the middleware, the outbox store and the relay:
// one on SQLite, one on PostgreSQL. Neither may link a driver it did not
// import (the README says the backends import none).
func TestProgramsLinkOnlyTheirDriver(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		program string
		want    string
		refused []string
	}{
		{"./testdata/sqliteonly", lite, []string{pgx, mysql}},
		{"./testdata/postgresonly", pgx, []string{lite, mysql}},
	} {
		t.Run(tt.program, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command("go", "list", "-deps", tt.program).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", tt.program, err, out)
			}
			deps := strings.Fields(string(out))
			has := func(prefix string) bool {
				for _, d := range deps {
					if d == prefix || strings.HasPrefix(d, prefix+"/") {
						return true
					}
				}
				return false
			}
			if !has(tt.want) {
				t.Fatalf("%s does not link %s, which it imports: the check looks at the wrong list", tt.program, tt.want)
			}
			for _, r := range tt.refused {
				if has(r) {
					t.Errorf("%s links %s, a driver it never imported", tt.program, r)
				}
			}
		})
	}
}
