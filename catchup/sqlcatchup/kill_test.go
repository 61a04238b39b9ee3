package sqlcatchup_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
)

// The helper process: a poller that applies events with a small delay each
// and appends the id of every event it handled to a file (before its
// transaction commits), run by the tests below as a child and killed with
// SIGKILL.
const (
	envDialect = "CATCHUP_HELPER_DIALECT"
	envDSN     = "CATCHUP_HELPER_DSN"
	envPrefix  = "CATCHUP_HELPER_PREFIX"
	envURL     = "CATCHUP_HELPER_URL"
	envReplica = "CATCHUP_HELPER_REPLICA"
	envLease   = "CATCHUP_HELPER_LEASE"
	envLog     = "CATCHUP_HELPER_LOG"
)

func TestHelperPollerProcess(t *testing.T) {
	ds := os.Getenv(envDialect)
	if ds == "" {
		t.Skip("helper process of TestPollerKilledMidPage and TestReplicasOnePolls")
	}
	d, _ := strconv.Atoi(ds)
	lease, _ := time.ParseDuration(os.Getenv(envLease))
	e := &env{t: t, d: steadfast.Dialect(d), dsn: os.Getenv(envDSN), prefix: os.Getenv(envPrefix)}
	e.db = openDB(t, e.d, e.dsn, 4)
	e.open(e.db)
	replica := os.Getenv(envReplica)
	f, err := os.OpenFile(os.Getenv(envLog), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ins := e.q("INSERT INTO " + e.effects + " (event_id, via) VALUES (?, ?)")
	handle := func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
		if _, err := tx.ExecContext(ctx, ins, ev.ID, replica); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond) // a page of 100 takes half a second
		mu.Lock()
		defer mu.Unlock()
		_, err := fmt.Fprintln(f, ev.ID)
		return err
	}
	client := &http.Client{Transport: replicaHeader(replica)}
	src, err := catchup.NewHTTPSource(client, os.Getenv(envURL))
	if err != nil {
		t.Fatal(err)
	}
	p, err := catchup.NewPoller("src", src, e.store, e.idem, handle, catchup.WithLogger(quietLogger()),
		catchup.WithLease(lease), catchup.WithPollInterval(100*time.Millisecond), catchup.WithOverlapEvents(20))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

// replicaHeader names the replica in each request, as a transport adding
// credentials would.
type replicaHeader string

func (r replicaHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("X-Replica", string(r))
	return http.DefaultTransport.RoundTrip(req)
}

func startHelper(t *testing.T, e *env, p *provider, replica string, lease time.Duration, logPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPollerProcess$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), envDialect+"="+strconv.Itoa(int(e.d)), envDSN+"="+e.dsn, envPrefix+"="+e.prefix,
		envURL+"="+p.url(), envReplica+"="+replica, envLease+"="+lease.String(), envLog+"="+logPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func kill(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

func countLines(t *testing.T, path string) int {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
	}
	return n
}

// TestPollerKilledMidPage: a poller in a child process is killed with
// SIGKILL again and again, mostly in the middle of a page's transaction
// (its handler had run for events that were then rolled back), while
// webhooks arrive in this process; restarted each time, it misses nothing
// and applies nothing twice.
func TestPollerKilledMidPage(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		t.Parallel() // each waits out leases for most of its time: the databases run side by side
		e := newEnv(t, d)
		p := newProvider(t)
		n, kills := 3000, 8
		if testing.Short() {
			n, kills = 600, 3
		}
		ids := p.add(n)
		logPath := filepath.Join(t.TempDir(), "handled.log")
		const lease = time.Second

		// Webhooks for a third of the events, from this process, meanwhile.
		hookPoller, err := catchup.NewPoller("src", newSource(t, p), e.store, e.idem, e.handler(), catchup.WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		hook := hookPoller.WebhookHandler()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(1, 2))
			for _, id := range ids {
				if rng.IntN(3) == 0 {
					deliver(t, hook, p.body(id))
					time.Sleep(time.Millisecond)
				}
			}
		}()

		for i := 0; i < kills; i++ {
			handled := countLines(t, logPath)
			child := startHelper(t, e, p, "r"+strconv.Itoa(i), lease, logPath)
			// Once it works (after up to a lease, for the dead one's to run
			// out), killed at a random point of its page.
			waitFor(t, time.Minute, "the child handling events", func() bool { return countLines(t, logPath) > handled })
			time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
			kill(child)
		}
		wg.Wait()
		var byChildren int
		if err := e.db.QueryRow("SELECT COUNT(*) FROM " + e.effects + " WHERE via <> 'webhook'").Scan(&byChildren); err != nil {
			t.Fatal(err)
		}
		rolledBack := countLines(t, logPath) - byChildren
		child := startHelper(t, e, p, "last", lease, logPath)
		defer kill(child)
		waitFor(t, 3*time.Minute, "every event applied", func() bool { return e.effectTotal() >= n })
		lists := p.lists.Load()
		waitFor(t, time.Minute, "three more passes", func() bool { return p.lists.Load() >= lists+3 })
		e.checkExactlyOnce(ids)
		t.Logf("%d kills; the handler had run for %d events whose transaction a kill rolled back", kills, rolledBack)
		if rolledBack <= 0 {
			t.Errorf("no kill landed in the middle of a page")
		}
	})
}

// TestReplicasOnePolls: two replicas run a poller for one source: one
// polls, the other never calls the provider; when the polling one is
// killed, the other takes over within the lease (plus the third of it the
// standby waits between checks) and applies everything, once.
func TestReplicasOnePolls(t *testing.T) {
	forDialects(t, func(t *testing.T, d steadfast.Dialect) {
		e := newEnv(t, d)
		p := newProvider(t)
		const lease = 1500 * time.Millisecond
		var (
			mu  sync.Mutex
			all []string
		)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // a steady stream of events
			defer wg.Done()
			for {
				ids := p.add(10)
				mu.Lock()
				all = append(all, ids...)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		logPath := filepath.Join(t.TempDir(), "handled.log")
		children := map[string]*exec.Cmd{
			"a": startHelper(t, e, p, "a", lease, logPath),
			"b": startHelper(t, e, p, "b", lease, logPath),
		}
		defer func() {
			for _, c := range children {
				kill(c)
			}
		}()
		waitFor(t, time.Minute, "polling for two seconds", func() bool {
			r := p.requests()
			return len(r) > 0 && time.Since(r[0].at) > 2*time.Second
		})
		before := p.requests()
		holder := before[0].replica
		for _, r := range before {
			if r.replica != holder {
				t.Fatalf("both replicas polled: %s and %s", holder, r.replica)
			}
		}
		other := map[string]string{"a": "b", "b": "a"}[holder]
		killedAt := time.Now()
		kill(children[holder])
		delete(children, holder)
		waitFor(t, time.Minute, "the other replica polling", func() bool {
			r := p.requests()
			return r[len(r)-1].replica == other
		})
		var took time.Duration
		for _, r := range p.requests() {
			if r.replica == other {
				took = r.at.Sub(killedAt)
				break
			}
		}
		t.Logf("%s polled %d times; %s took over %v after the kill (lease %v)", holder, len(before), other, took, lease)
		if took > lease+lease/3+time.Second {
			t.Errorf("the takeover took %v, more than the lease %v and the standby's check", took, lease)
		}
		close(stop)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		waitFor(t, time.Minute, "every event applied", func() bool { return e.effectTotal() >= len(all) })
		e.checkExactlyOnce(all)
		for _, r := range p.requests() {
			if r.at.After(killedAt) && r.replica == holder {
				t.Errorf("the killed replica polled after its death")
			}
		}
	})
}
