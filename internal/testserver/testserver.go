package testserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/internal/testenv"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitTCP waits until addr accepts connections, or fails the test.
func waitTCP(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testserver: %s did not accept connections within %v: %v", addr, within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// lookBinary finds a server binary in PATH or in the given directories.
func lookBinary(t testing.TB, name string, dirs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, pattern := range dirs {
		matches, _ := filepath.Glob(filepath.Join(pattern, name))
		if len(matches) > 0 {
			return matches[len(matches)-1]
		}
	}
	testenv.NeedServers(t, name+" is not installed")
	return ""
}

// process is a server run as a child of the test.
type process struct {
	name string
	path string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *process) start(t testing.TB, logPath string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatalf("testserver: %s already running", p.name)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testserver: %s log: %v", p.name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("testserver: start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// stop sends sig and waits for the process to exit (SIGKILL after a while).
func (p *process) stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// Redis is a redis-server of the test's own.
type Redis struct {
	addr string
	dir  string
	proc *process
}

// StartRedis starts a redis-server on a free port with its directory in a
// temporary folder and no snapshots; extraArgs are added to its command line,
// e.g. "--appendonly", "yes", "--appendfsync", "always" for a server that keeps
// its data across Kill and Start. It is killed when the test ends.
func StartRedis(t testing.TB, extraArgs ...string) *Redis {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	r := &Redis{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no", "--protected-mode", "no"}
	r.proc = &process{name: "redis-server", path: bin, args: append(args, extraArgs...)}
	t.Cleanup(func() { r.proc.stop(syscall.SIGKILL) })
	r.Start(t)
	return r
}

// Addr returns host:port.
func (r *Redis) Addr() string { return r.addr }

// URL returns redis://host:port/0.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Start starts the server again after Stop or Kill, on the same port and
// directory, and waits until it answers commands: a server that reads its
// dataset back accepts connections at once but answers "-LOADING" until it
// is done.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	r.proc.start(t, filepath.Join(r.dir, "redis.log"))
	waitTCP(t, r.addr, 15*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		reply, err := redisPing(r.addr)
		if err == nil && reply == "+PONG" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testserver: redis-server at %s does not answer PING within 30s: %q %v", r.addr, reply, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisPing sends one PING on a connection of its own and returns the
// reply's first line.
func redisPing(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// Stop shuts the server down cleanly (SIGTERM: it writes its AOF).
func (r *Redis) Stop(t testing.TB) { r.proc.stop(syscall.SIGTERM) }

// Kill kills the server at once (SIGKILL).
func (r *Redis) Kill(t testing.TB) { r.proc.stop(syscall.SIGKILL) }

// NATS is a nats-server with JetStream of the test's own.
type NATS struct {
	addr string
	dir  string
	proc *process
}

// StartNATS starts a nats-server with JetStream on a free port, storing its
// streams in a temporary folder. It is killed when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	bin := lookBinary(t, "nats-server", "/usr/sbin")
	dir := t.TempDir()
	port := FreePort(t)
	n := &NATS{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	n.proc = &process{name: "nats-server", path: bin, args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir}}
	t.Cleanup(func() { n.proc.stop(syscall.SIGKILL) })
	n.Start(t)
	return n
}

// URL returns nats://host:port.
func (n *NATS) URL() string { return "nats://" + n.addr }

// Start starts the server again after Stop or Kill and waits until it
// accepts connections.
func (n *NATS) Start(t testing.TB) {
	t.Helper()
	n.proc.start(t, filepath.Join(n.dir, "nats.log"))
	waitTCP(t, n.addr, 15*time.Second)
}

// Stop shuts the server down cleanly.
func (n *NATS) Stop(t testing.TB) { n.proc.stop(syscall.SIGTERM) }

// Kill kills the server at once.
func (n *NATS) Kill(t testing.TB) { n.proc.stop(syscall.SIGKILL) }

// Postgres is a PostgreSQL cluster of the test's own.
type Postgres struct {
	bin  string
	dir  string
	port int
	asPG bool
}

// StartPostgres creates a PostgreSQL cluster in a temporary folder (initdb,
// trust authentication, user postgres), starts it on a free loopback port and
// waits until it accepts connections. The cluster is stopped and its folder
// removed when the test ends. It takes a few seconds.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	initdb := lookBinary(t, "initdb", "/usr/lib/postgresql/*/bin")
	binDir := filepath.Dir(initdb)
	if _, err := os.Stat(filepath.Join(binDir, "pg_ctl")); err != nil {
		if matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl"); len(matches) > 0 {
			binDir = filepath.Dir(matches[len(matches)-1])
		} else {
			testenv.NeedServers(t, "pg_ctl is not installed")
		}
	}
	asPG := os.Geteuid() == 0
	var uid, gid int
	if asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			testenv.NeedServers(t, "the postgres OS user does not exist")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	dir := postgresDir(t, asPG, uid, gid)
	p := &Postgres{bin: binDir, dir: dir, port: FreePort(t), asPG: asPG}
	t.Cleanup(func() {
		_ = p.pgctl("stop", "-m", "immediate", "-w")
		_ = os.RemoveAll(dir)
	})
	out, err := p.run(filepath.Join(binDir, "initdb"), "-D", p.data(), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	if err != nil {
		t.Fatalf("testserver: initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 100\nshared_buffers = 32MB\n", p.port, dir)
	if err := p.appendConf(conf); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	p.Start(t)
	return p
}

// postgresDir makes the cluster's folder. As root the server runs as the
// postgres OS user, which must be able to reach the folder: the temporary
// directory may be private to root (a per-user TMPDIR), so the folder is made
// in the first of TMPDIR, /tmp and /var/tmp that the postgres user can enter.
// When none can be used the test skips (fails under CI) saying what it needs.
func postgresDir(t testing.TB, asPG bool, uid, gid int) string {
	t.Helper()
	bases := []string{os.TempDir(), "/tmp", "/var/tmp"}
	var tried []string
	for _, base := range bases {
		dir, err := os.MkdirTemp(base, "steadfast-pg-")
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", base, err))
			continue
		}
		if !asPG {
			return dir
		}
		if err := os.Chown(dir, uid, gid); err == nil {
			// The postgres user must be able to enter every folder on the way.
			if err := exec.Command("runuser", "-u", "postgres", "--", "test", "-w", dir).Run(); err == nil {
				return dir
			}
		}
		_ = os.RemoveAll(dir)
		tried = append(tried, base+" (not reachable by the postgres user)")
	}
	testenv.NeedServers(t, "a PostgreSQL of the test's own needs a temporary folder that the postgres OS user can enter; tried "+strings.Join(tried, ", "))
	return ""
}

func (p *Postgres) data() string { return filepath.Join(p.dir, "data") }

func (p *Postgres) appendConf(s string) error {
	f, err := os.OpenFile(filepath.Join(p.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(s)
	return err
}

func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	var cmd *exec.Cmd
	if p.asPG {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	return cmd.CombinedOutput()
}

func (p *Postgres) pgctl(args ...string) error {
	out, err := p.run(filepath.Join(p.bin, "pg_ctl"), append([]string{"-D", p.data(), "-l", filepath.Join(p.dir, "server.log")}, args...)...)
	if err != nil {
		return fmt.Errorf("pg_ctl %v: %w\n%s", args, err, out)
	}
	return nil
}

// Port returns the cluster's TCP port.
func (p *Postgres) Port() int { return p.port }

// Addr returns 127.0.0.1:port.
func (p *Postgres) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// URL returns a connection string for database postgres as user postgres.
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// Start starts the cluster (again) and waits until it accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if err := p.pgctl("start", "-w", "-t", "60"); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	waitTCP(t, p.Addr(), 30*time.Second)
}

// Stop shuts the cluster down (fast mode: connections are closed, data is
// kept).
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if err := p.pgctl("stop", "-m", "fast", "-w"); err != nil {
		t.Fatalf("testserver: %v", err)
	}
}

// Kill stops the cluster the way a crash would (immediate mode: no
// checkpoint; recovery runs at the next Start).
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	if err := p.pgctl("stop", "-m", "immediate", "-w"); err != nil {
		t.Fatalf("testserver: %v", err)
	}
}

// Restart stops the cluster in fast mode and starts it again.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	p.Stop(t)
	p.Start(t)
}

// Proxy is a TCP proxy between clients and a server on loopback. It can cut
// every connection (as a server crash or a network partition would) or hang
// them (as a server that stopped answering would).
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	state  proxyState
	cond   *sync.Cond
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

type proxyState int

const (
	proxyForward proxyState = iota
	proxyCut
	proxyHang
)

// NewProxy starts a proxy on a free loopback port that forwards to target
// (host:port). It is closed, with all its connections, when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: proxy listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's host:port; clients connect there.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection and refuses new ones (they are accepted
// and closed at once) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.state = proxyCut
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Hang keeps connections open but stops forwarding bytes in both directions
// until Restore; new connections are accepted and hang too.
func (p *Proxy) Hang() {
	p.mu.Lock()
	p.state = proxyHang
	p.mu.Unlock()
}

// Restore forwards again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.state = proxyForward
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.state == proxyCut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
}

// pipe copies from src to dst, waiting while the proxy hangs; either side
// closing ends both.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitForward() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitForward blocks while the proxy hangs; it reports false once the proxy
// was cut or closed.
func (p *Proxy) waitForward() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.state == proxyHang && !p.closed {
		p.cond.Wait()
	}
	return !p.closed && p.state == proxyForward
}
