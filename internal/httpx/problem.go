package httpx

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem is an RFC 9457 problem details object, the body of every error
// response that a steadfast middleware writes.
type Problem struct {
	// Type is a stable URI that clients may branch on.
	Type string `json:"type"`
	// Title is a short summary of Type.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence; it never holds secrets or headers.
	Detail string `json:"detail,omitempty"`
}

// WriteProblem answers p as application/problem+json with p.Status, marked
// "Cache-Control: no-store" (an error answer about one request must not be
// served from a cache to another) and "X-Content-Type-Options: nosniff".
// Extra headers (Retry-After, Connection: close) are the caller's to set on w
// before the call. The body is marshalled from plain strings and ints, so it
// cannot fail to encode.
func WriteProblem(w http.ResponseWriter, p Problem) {
	body, _ := json.Marshal(p)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}
