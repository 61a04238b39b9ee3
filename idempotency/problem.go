package idempotency

import (
	"net/http"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

// Problem is the type URI of an application/problem+json (RFC 9457) error
// response of the middleware, whose body holds type, title, status and
// detail. The URIs are stable: clients may branch on them. A request body
// over WithMaxBodyBytes gets 413 with the type
// https://steadfast-go.github.io/problems/request-body-too-large, and one
// that cannot be read 400 with .../request-body-unreadable, as from every
// steadfast middleware.
type Problem string

// The problems the middleware answers with.
const (
	// ProblemKeyMissing (400): the route requires a key and the request has none.
	ProblemKeyMissing Problem = "https://steadfast-go.github.io/problems/idempotency-key-missing"
	// ProblemKeyInvalid (400): the key is malformed, too long or given more
	// than once, or the store refused it (ErrInvalid, ErrTooLarge).
	ProblemKeyInvalid Problem = "https://steadfast-go.github.io/problems/idempotency-key-invalid"
	// ProblemKeyMismatch (422): the key was used with another request.
	ProblemKeyMismatch Problem = "https://steadfast-go.github.io/problems/idempotency-key-mismatch"
	// ProblemInProgress (409): a request with the key is being processed.
	ProblemInProgress Problem = "https://steadfast-go.github.io/problems/idempotency-key-in-progress"
	// ProblemResponseNotStored (422): the key's request was processed but its
	// response was too large to keep.
	ProblemResponseNotStored Problem = "https://steadfast-go.github.io/problems/idempotency-response-not-stored"
	// ProblemStoreUnavailable (503): the store failed; the handler did not run.
	ProblemStoreUnavailable Problem = "https://steadfast-go.github.io/problems/idempotency-store-unavailable"
	// ProblemStoreFull (503): the store holds as many keys as it may.
	ProblemStoreFull Problem = "https://steadfast-go.github.io/problems/idempotency-store-full"
)

// status returns the HTTP status that the middleware answers p with.
func (p Problem) status() int {
	switch p {
	case ProblemKeyMissing, ProblemKeyInvalid:
		return http.StatusBadRequest
	case ProblemKeyMismatch, ProblemResponseNotStored:
		return http.StatusUnprocessableEntity
	case ProblemInProgress:
		return http.StatusConflict
	case ProblemStoreUnavailable, ProblemStoreFull:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// title returns the short summary of p.
func (p Problem) title() string {
	switch p {
	case ProblemKeyMissing:
		return "Idempotency key missing"
	case ProblemKeyInvalid:
		return "Idempotency key invalid"
	case ProblemKeyMismatch:
		return "Idempotency key reused for another request"
	case ProblemInProgress:
		return "Request with this idempotency key in progress"
	case ProblemResponseNotStored:
		return "Response of this idempotency key not stored"
	case ProblemStoreUnavailable:
		return "Idempotency store unavailable"
	case ProblemStoreFull:
		return "Idempotency store full"
	}
	return "Error"
}

func writeProblem(w http.ResponseWriter, p Problem, detail string) {
	httpx.WriteProblem(w, httpx.Problem{Type: string(p), Title: p.title(), Status: p.status(), Detail: detail})
}
