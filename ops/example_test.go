package ops_test

import (
	"log"
	"net/http"

	"github.com/steadfast-go/steadfast/ops"
)

// The page is mounted under a prefix, behind the application's own
// authentication; actions are enabled and logged with the operator's name.
func Example() {
	page, err := ops.New(
		// ops.WithOutbox(outboxStore), ops.WithIdempotency(idemStore),
		ops.WithActions(func(r *http.Request) string {
			user, _, _ := r.BasicAuth() // whatever names the operator
			return user
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", requireAdmin(http.StripPrefix("/ops", page)))
	// relay, err := outbox.NewRelay(outboxStore, page.Observe(publisher))
	_ = mux
	// Output:
}

// requireAdmin stands for the application's own authentication.
func requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "admin" || pass == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="ops"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
