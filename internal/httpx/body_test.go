package httpx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

// unsized hides the length of its content, as a chunked body does, and
// returns it in small reads.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p[:min(len(p), 3)]) }

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadBody(t *testing.T) {
	t.Parallel()
	const limit = 8
	req := func(body io.Reader, length int64) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if body != nil {
			r.Body = io.NopCloser(body)
		}
		r.ContentLength = length
		return r
	}
	sized := func(s string) *http.Request { return req(strings.NewReader(s), int64(len(s))) }
	chunked := func(s string) *http.Request { return req(unsized{strings.NewReader(s)}, -1) }
	tests := []struct {
		name     string
		r        *http.Request
		want     []byte
		tooLarge bool
		fails    bool
	}{
		{"nil body", func() *http.Request { r := req(nil, 0); r.Body = nil; return r }(), nil, false, false},
		{"no body", req(nil, 0), nil, false, false},
		{"declared", sized("hello"), []byte("hello"), false, false},
		{"declared at the limit", sized("12345678"), []byte("12345678"), false, false},
		{"declared over the limit", sized("123456789"), nil, true, false},
		{"declared over the limit, body short", req(strings.NewReader("1"), 9), nil, true, false},
		{"declared short of the body", req(strings.NewReader("123456789"), 2), nil, true, false},
		{"undeclared", chunked("hello"), []byte("hello"), false, false},
		{"undeclared empty", chunked(""), []byte{}, false, false},
		{"undeclared at the limit", chunked("12345678"), []byte("12345678"), false, false},
		{"undeclared over the limit", chunked("123456789"), nil, true, false},
		{"unreadable", req(failing{}, -1), nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := httpx.ReadBody(tt.r, limit, nil)
			switch {
			case tt.tooLarge:
				var mbe *http.MaxBytesError
				require.ErrorAs(t, err, &mbe)
				assert.EqualValues(t, limit, mbe.Limit)
				p := httpx.BodyProblem(err, limit)
				assert.Equal(t, httpx.ProblemBodyTooLarge, p.Type)
				assert.Equal(t, http.StatusRequestEntityTooLarge, p.Status)
				assert.Contains(t, p.Detail, "8 bytes")
			case tt.fails:
				require.Error(t, err)
				p := httpx.BodyProblem(err, limit)
				assert.Equal(t, httpx.ProblemBodyUnreadable, p.Type)
				assert.Equal(t, http.StatusBadRequest, p.Status)
			default:
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
			}
		})
	}
}

// TestReadBodyReusesBuffer checks what a pooling middleware relies on: a
// body that fits the buffer given is read into it without allocating.
func TestReadBodyReusesBuffer(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 2048)
	buf := make([]byte, 0, 4096)
	var br bytes.Reader
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	rc := io.NopCloser(&br)
	for _, length := range []int64{int64(len(body)), -1} {
		allocs := testing.AllocsPerRun(100, func() {
			br.Reset(body)
			r.Body, r.ContentLength = rc, length
			got, err := httpx.ReadBody(r, 1<<20, buf)
			if err != nil || len(got) != len(body) || &got[0] != &buf[:1][0] {
				t.Fatalf("ReadBody = %d bytes, %v, or not in the buffer given", len(got), err)
			}
		})
		assert.Zero(t, allocs, "ContentLength %d", length)
	}
	// A declared body larger than the buffer is read with one allocation.
	allocs := testing.AllocsPerRun(100, func() {
		br.Reset(body)
		r.Body, r.ContentLength = rc, int64(len(body))
		if _, err := httpx.ReadBody(r, 1<<20, buf[:0:16]); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 1.0, allocs)
}

// TestReadBodyExactSize checks that a declared body is read into exactly
// its length, with a server's own request body: one byte more would put a
// 2 KiB webhook in the allocator's next size class (2304 bytes).
func TestReadBodyExactSize(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("x"), 2048)
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := httpx.ReadBody(r, 1<<20, nil)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	b := <-got
	assert.Equal(t, body, b)
	assert.Equal(t, len(body), cap(b), "capacity of the body read")
	// A declared empty body is read as empty, not as none.
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(""))
	r.ContentLength = 0
	b, err = httpx.ReadBody(r, 1<<20, nil)
	require.NoError(t, err)
	assert.NotNil(t, b)
	assert.Empty(t, b)
}

func TestBodyReader(t *testing.T) {
	t.Parallel()
	var rd httpx.BodyReader
	rd.Reset([]byte("abc"))
	var rc io.ReadCloser = &rd
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got))
	assert.NoError(t, rc.Close())
}

func TestWriteProblem(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	rec.Header().Set("Retry-After", "1")
	httpx.WriteProblem(rec, httpx.Problem{Type: "https://example.com/p", Title: "T", Status: http.StatusConflict, Detail: "d"})
	assert.Equal(t, http.StatusConflict, rec.Code)
	h := rec.Header()
	assert.Equal(t, "application/problem+json", h.Get("Content-Type"))
	assert.Equal(t, "no-store", h.Get("Cache-Control"))
	assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	assert.Equal(t, "1", h.Get("Retry-After"), "headers set before the call are kept")
	var p httpx.Problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	assert.Equal(t, httpx.Problem{Type: "https://example.com/p", Title: "T", Status: http.StatusConflict, Detail: "d"}, p)
	assert.Equal(t, h.Get("Content-Length"), strconv.Itoa(rec.Body.Len()))
}
