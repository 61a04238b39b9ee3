package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

// TestPostgresOneRoundTrip: on a connection that has run them once (pgx's
// statement cache then holds their descriptions), the claim of a new key,
// its completion and the claim of the completed key (a replay) each cost
// one round trip: one flight of messages from the client, answered once.
// database/sql's liveness ping of a connection idle for a second (a simple
// query, 'Q') is not counted.
func TestPostgresOneRoundTrip(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newFlightProxy(t, u.Host)
	u.Host = p.addr()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s := newStoreOn(t, db, steadfast.Postgres)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := []byte(`{"id":1}`)
	life := func(key string) (claim, complete, replay int) {
		t.Helper()
		before := p.flights()
		c, err := s.Claim(ctx, key, "fp", time.Minute)
		if err != nil || !c.Acquired {
			t.Fatalf("claim of new key %q = %+v, %v", key, c, err)
		}
		claim = p.flights() - before
		before = p.flights()
		if err := s.Complete(ctx, key, c.Token, resp, time.Hour); err != nil {
			t.Fatalf("complete %q: %v", key, err)
		}
		complete = p.flights() - before
		before = p.flights()
		c, err = s.Claim(ctx, key, "fp", time.Minute)
		if err != nil || c.Acquired || c.Record.Status != idempotency.StatusCompleted || string(c.Record.Response) != string(resp) {
			t.Fatalf("replay of %q = %+v, %v", key, c, err)
		}
		replay = p.flights() - before
		return claim, complete, replay
	}
	life("warm-up") // prepares the statements on the connection
	if claim, complete, replay := life("measured"); claim != 1 || complete != 1 || replay != 1 {
		t.Errorf("round trips: claim of a new key %d, complete %d, replay %d; want 1 each", claim, complete, replay)
	}
}

// flightProxy forwards TCP connections to a PostgreSQL server and counts
// the flights of client messages: runs of messages sent between two
// answers of the server. A flight made only of simple queries ('Q', which
// database/sql's pings are) is not counted. It serves one connection at a
// time.
type flightProxy struct {
	ln     net.Listener
	target string

	mu sync.Mutex
	n  int
	// fromClient is whether the last bytes went from the client to the
	// server; counted whether the current flight was counted.
	fromClient, counted bool
	wg                  sync.WaitGroup
	conns               []net.Conn
}

func newFlightProxy(t *testing.T, target string) *flightProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flightProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *flightProxy) addr() string { return p.ln.Addr().String() }

func (p *flightProxy) flights() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *flightProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			defer s.Close()
			p.fromClientTo(s, c)
		}()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					p.mu.Lock()
					p.fromClient = false
					p.mu.Unlock()
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// fromClientTo forwards the client's messages to the server one by one,
// counting flights. The startup message has no type byte, nor the
// requests for encryption that may precede it (refused: the test servers
// run without TLS).
func (p *flightProxy) fromClientTo(dst, src net.Conn) {
	var head [8]byte
	for {
		if _, err := io.ReadFull(src, head[:8]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(head[:4])) - 8
		if !p.forward(dst, src, head[:8], n) {
			return
		}
		// SSLRequest and GSSENCRequest: 8 bytes, a code of their own.
		if code := binary.BigEndian.Uint32(head[4:8]); n != 0 || (code != 80877103 && code != 80877104) {
			break
		}
	}
	for {
		if _, err := io.ReadFull(src, head[:5]); err != nil {
			return
		}
		p.mu.Lock()
		if !p.fromClient {
			p.fromClient, p.counted = true, false
		}
		if head[0] != 'Q' && !p.counted {
			p.counted = true
			p.n++
		}
		p.mu.Unlock()
		if !p.forward(dst, src, head[:5], int(binary.BigEndian.Uint32(head[1:5]))-4) {
			return
		}
	}
}

// forward writes head and the next n bytes of src to dst.
func (p *flightProxy) forward(dst, src net.Conn, head []byte, n int) bool {
	if n < 0 {
		return false
	}
	if _, err := dst.Write(head); err != nil {
		return false
	}
	_, err := io.CopyN(dst, src, int64(n))
	return err == nil
}
