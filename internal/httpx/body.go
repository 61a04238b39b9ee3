package httpx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ReadBody reads the whole body of r, at most limit bytes, and returns it.
// It reads into buf's storage (from buf[:0]) when buf has room, so a
// middleware that pools its buffers reads without allocating; with a nil or
// small buf it allocates once when the length is declared (exactly
// ContentLength bytes: the end is seen by a read of nothing, from the
// readers that report it so, as net/http's request bodies do) and grows as
// needed when it is not.
//
// A declared ContentLength above limit is refused before anything is read;
// an undeclared body is read up to limit+1 bytes, to tell "limit" from
// "more". Both give a *http.MaxBytesError. A request without a body (nil or
// http.NoBody) gives nil, nil. Any other error is the body's read error.
// ReadBody neither closes nor replaces r.Body: the server closes it, and the
// caller hands the bytes on (BodyReader).
func ReadBody(r *http.Request, limit int64, buf []byte) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	buf = buf[:0]
	if r.ContentLength >= 0 && int64(cap(buf)) < r.ContentLength {
		buf = make([]byte, 0, r.ContentLength)
	}
	for {
		if len(buf) == cap(buf) {
			// Full: a read of nothing tells the end of the body without
			// growing buf from the readers that report it there
			// (net/http's request bodies, bytes.Reader); others grow it.
			if n, err := r.Body.Read(buf[len(buf):]); n == 0 && err == io.EOF {
				if buf == nil {
					return []byte{}, nil // read, and empty: not "no body"
				}
				return buf, nil
			} else if err != nil && err != io.EOF {
				return nil, err
			}
			buf = append(buf, 0)[:len(buf)]
		}
		// Read at most one byte past limit, to tell "limit" from "more".
		room := min(int64(cap(buf)-len(buf)), limit+1-int64(len(buf)))
		n, err := r.Body.Read(buf[len(buf) : len(buf)+int(room)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, &http.MaxBytesError{Limit: limit}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// BodyReader hands a body that ReadBody read on to the next handler as
// r.Body. Its zero value is empty; Reset points it at a body. A middleware
// may pool it together with the buffer, provided it takes both back only
// after the next handler returned (a handler must not read the body after
// it returned, as net/http requires).
type BodyReader struct {
	bytes.Reader
}

// Close does nothing: the body is in memory.
func (*BodyReader) Close() error { return nil }

// The problem types of a body that ReadBody refused, shared by every
// middleware that reads bodies.
const (
	// ProblemBodyTooLarge (413): the request body is over the limit.
	ProblemBodyTooLarge = "https://steadfast-go.github.io/problems/request-body-too-large"
	// ProblemBodyUnreadable (400): the request body could not be read.
	ProblemBodyUnreadable = "https://steadfast-go.github.io/problems/request-body-unreadable"
)

// BodyProblem returns the answer to an error of ReadBody with limit: 413
// ProblemBodyTooLarge for a body over the limit (then the caller should also
// set "Connection: close", since the rest of the body was not read), 400
// ProblemBodyUnreadable for anything else.
func BodyProblem(err error, limit int64) Problem {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return Problem{
			Type:   ProblemBodyTooLarge,
			Title:  "Request body too large",
			Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("The request body is larger than %d bytes.", limit),
		}
	}
	return Problem{
		Type:   ProblemBodyUnreadable,
		Title:  "Request body unreadable",
		Status: http.StatusBadRequest,
		Detail: "The request body could not be read.",
	}
}
