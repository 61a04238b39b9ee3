package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/steadfast-go/steadfast/outbox/backend"
	"github.com/steadfast-go/steadfast/retry"
)

// maxSettle is the most outcomes written back at once.
const maxSettle = 1000

// stopGrace bounds the final write-back after Stop's context has ended, so
// that released messages are still released at once.
const stopGrace = 10 * time.Second

// Relay moves committed messages from a Store to a Publisher: it claims
// ready messages under a lease, publishes them outside any transaction with
// bounded concurrency (overall and per destination), and writes each outcome back
// guarded by the claim's token. Any number of relays, in any number of
// processes, may run against one store.
//
// Delivery is at least once: a relay that dies after publishing and before
// writing back leaves the message to be published again, with the same ID,
// once its lease expires. Messages with a partition key are delivered one at
// a time per key, in position order (see Store.Claim); a failing head holds
// only its own key, until it is delivered or dead-lettered.
//
// A Relay is safe for concurrent use. Start and Stop may each be called more
// than once; a stopped relay cannot be started again.
type Relay struct {
	store   Store
	pub     Publisher
	cfg     config
	log     *slog.Logger
	m       *metrics
	tracer  trace.Tracer
	maxHeld int

	life    sync.Mutex
	state   int // 0 new, 1 running, 2 stopped
	stopped chan struct{}

	loopCtx    context.Context // ends when Stop begins: no more claims, waiting messages are released
	loopCancel context.CancelFunc
	stopping   atomic.Bool // set as loopCtx ends, cheaper to test per message
	dispatchMu sync.Mutex  // a write-back that claimed dispatches under it, unless stopping (see dispatchNext)
	spanOpts   []trace.SpanStartOption
	pubCtx     context.Context // ends when Stop's context ends: in-flight publishes are cut
	pubCancel  context.CancelCauseFunc
	setCtx     context.Context // ends after the final write-back's grace
	setCancel  context.CancelFunc
	loops      sync.WaitGroup
	pubs       sync.WaitGroup
	settlers   sync.WaitGroup
	outcomes   chan settled
	renewCtx   context.Context // ends once the last publish is done
	renewStop  context.CancelFunc
	renewers   sync.WaitGroup

	leaseMu sync.Mutex
	leases  map[*lease]struct{} // the leases of the batches held

	wake  chan struct{}
	freed chan struct{}

	mu        sync.Mutex
	held      int
	reserved  int // of held, the room taken by claims in flight (they may find fewer messages)
	heldDest  map[string]int
	paused    map[string]knownPause
	throttled map[string]time.Time // WithThrottle: until when each destination is held back, in memory only
	destSem   map[string]chan struct{}
	futile    futile            // the last futile claim
	probing   futile            // a claim in flight that holds destinations back (see reserve)
	probes    uint64            // numbers the claims that hold destinations back
	probe     uint64            // the number of the one in probing
	spanNames map[string]string // "outbox publish <topic>", for up to maxSpanNames topics
	woken     atomic.Uint64     // calls of Wake (notifications included)
	globalSem chan struct{}
}

// claimed is a message the relay holds: what it publishes and what it
// needs to write the outcome back.
type claimed struct {
	Delivery
	backend.Claim
	lease    *lease
	held     *held
	spanName string
	// turn counts the messages of its key that this relay published in a
	// row before this one: 0 for a message a claim took, one more than its
	// predecessor's for one a write-back claimed (see flush).
	turn int
}

type settled struct {
	backend.Outcome
	key  string // the message's partition key
	turn int    // the message's turn (see claimed)
	dest string // a Pause's destination
}

// finishedKey is an outcome of a write-back batch that finishes a keyed
// message: its index in the batch, its key and its turn.
type finishedKey struct {
	i    int
	key  string
	turn int
}

// maxTurn is the most messages of one key that a relay publishes in a row:
// the write-back that finishes the last of them leaves the key's next
// message to the claims, which take the oldest ready messages first (see
// flush). Measured on PostgreSQL, an ordered
// relay over 1,000 keys 100 deep runs at about 0.8 of the unordered rate
// with 16, 0.7 with 8 and 4, 0.5 with no write-back claiming (turns of 1).
const maxTurn = 16

// NewRelay returns a relay from store to pub, configured by opts. It starts
// nothing: call Start or Run. It returns an error for a nil store or
// publisher, and one naming the option at fault for an invalid option.
func NewRelay(store Store, pub Publisher, opts ...Option) (*Relay, error) {
	if isNil(store) {
		return nil, errors.New("outbox: NewRelay: store is nil")
	}
	if isNil(pub) {
		return nil, errors.New("outbox: NewRelay: publisher is nil")
	}
	cfg := defaults()
	if err := applyOptions("NewRelay", &cfg, opts); err != nil {
		return nil, err
	}
	if err := cfg.finish("NewRelay"); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.meterProvider)
	if err != nil {
		return nil, fmt.Errorf("outbox: metrics: %w", err)
	}
	r := &Relay{
		store:     store,
		pub:       pub,
		cfg:       cfg,
		log:       cfg.logger,
		m:         m,
		tracer:    cfg.tracerProvider.Tracer(instrumentationName),
		maxHeld:   cfg.concurrency + 2*cfg.batchSize,
		stopped:   make(chan struct{}),
		wake:      make(chan struct{}, 1),
		freed:     make(chan struct{}, 1),
		heldDest:  map[string]int{},
		paused:    map[string]knownPause{},
		throttled: map[string]time.Time{},
		destSem:   map[string]chan struct{}{},
		globalSem: make(chan struct{}, cfg.concurrency),
		spanNames: map[string]string{},
		spanOpts:  []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)},
		leases:    map[*lease]struct{}{},
	}
	r.outcomes = make(chan settled, r.maxHeld)
	return r, nil
}

// Start launches the relay's goroutines and returns at once. They run until
// Stop; ctx's values (not its cancellation) are passed to the store and the
// publisher. Calling Start on a running relay does nothing; after Stop it
// returns ErrStopped.
func (r *Relay) Start(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	switch r.state {
	case 1:
		return nil
	case 2:
		return ErrStopped
	}
	if err := r.m.register(r.cfg.meterProvider); err != nil {
		return fmt.Errorf("outbox: metrics: %w", err)
	}
	base := context.WithoutCancel(ctx)
	r.loopCtx, r.loopCancel = context.WithCancel(base)
	r.pubCtx, r.pubCancel = context.WithCancelCause(base)
	r.setCtx, r.setCancel = context.WithCancel(base)
	r.renewCtx, r.renewStop = context.WithCancel(base)
	r.state = 1
	r.renewers.Add(1)
	go r.renewLoop(r.renewCtx)
	for range r.cfg.claimers {
		r.goLoop(r.claimLoop)
	}
	if r.cfg.notifier != nil {
		r.goLoop(r.listenLoop)
	}
	r.goLoop(r.pauseLoop)
	r.goLoop(r.statsLoop)
	for range 2 {
		r.settlers.Add(1)
		go r.settleLoop()
	}
	return nil
}

func (r *Relay) goLoop(f func(ctx context.Context)) {
	r.loops.Add(1)
	go func() {
		defer r.loops.Done()
		f(r.loopCtx)
	}()
}

// Stop stops claiming (a claim in flight completes, bounded by the publish
// timeout), releases at once the claimed messages not yet being published,
// lets in-flight publishes finish until ctx ends (then cuts them off and
// releases their messages), writes every outcome back, and returns when all
// of the relay's goroutines have ended. The final write-back gets a grace of
// 10 s after ctx ended. Stop returns ctx's error when it had to cut
// publishes off. Calling Stop again waits for the first Stop; Stop on a
// relay never started returns nil.
func (r *Relay) Stop(ctx context.Context) error {
	r.life.Lock()
	switch r.state {
	case 0:
		r.state = 2
		close(r.stopped)
		r.life.Unlock()
		return nil
	case 2:
		r.life.Unlock()
		select {
		case <-r.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.state = 2
	r.life.Unlock()

	r.stopping.Store(true)
	r.dispatchMu.Lock() // a write-back dispatching what it claimed has done so
	r.dispatchMu.Unlock()
	r.loopCancel()
	r.loops.Wait()
	var err error
	pubsDone := make(chan struct{})
	go func() { r.pubs.Wait(); close(pubsDone) }()
	select {
	case <-pubsDone:
	case <-ctx.Done():
		err = ctx.Err()
		r.pubCancel(ErrStopped)
		<-pubsDone
	}
	r.renewStop()
	r.renewers.Wait()
	close(r.outcomes)
	setDone := make(chan struct{})
	go func() { r.settlers.Wait(); close(setDone) }()
	select {
	case <-setDone:
	case <-ctx.Done():
		select {
		case <-setDone:
		case <-time.After(stopGrace):
			r.setCancel()
			<-setDone
		}
	}
	r.pubCancel(ErrStopped)
	r.setCancel()
	r.m.unregister()
	close(r.stopped)
	return err
}

// Run starts the relay, waits for ctx to end, and stops it, giving
// in-flight publishes the publish timeout to finish. It returns the error of
// Start, or nil.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.publishTimeout)
	defer cancel()
	_ = r.Stop(sctx)
	return nil
}

// Wake asks the relay to look for ready messages now instead of at its next
// poll. Call it after committing a transaction that enqueued messages, when
// the relay runs in the same process. It never blocks.
func (r *Relay) Wake() {
	r.woken.Add(1)
	signal(r.wake)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// reserve takes up to one batch of holding room and says which destinations
// not to claim: the paused ones, and (held) those the relay holds back in
// memory: throttled, or held to their fill already. It takes nothing when
// the claim would repeat a futile one (see futile), or one still in flight
// from another claim loop: that one may come back short too, and then it
// is the futile one; when it comes back full, it wakes the claim loops. A
// claim that holds destinations back gets a probe number (0 for one that
// holds none), by which the claim loop clears r.probing when it is back.
func (r *Relay) reserve() (n int, exclude, held []string, probe uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = min(r.cfg.batchSize, r.maxHeld-r.held)
	if n <= 0 {
		return 0, nil, nil, 0
	}
	now := time.Now()
	for d, until := range r.throttled {
		if now.Before(until) {
			held = append(held, d) // no more of it than its throttle lets through
		} else {
			delete(r.throttled, d)
		}
	}
	limit := r.cfg.destConcurrency + r.cfg.batchSize
	for d, h := range r.heldDest {
		if h >= limit && !now.Before(r.paused[d].until) && !slices.Contains(held, d) {
			held = append(held, d)
		}
	}
	woken := r.woken.Load()
	if r.futile.covers(held, now, r.cfg.pollInterval, woken) || r.probing.covers(held, now, r.cfg.pollInterval, woken) {
		return 0, nil, nil, 0
	}
	if len(held) > 0 {
		r.probes++
		probe = r.probes
		r.probing = futile{at: now, held: held, woken: woken}
		r.probe = probe
	}
	r.held += n
	r.reserved += n
	for d, p := range r.paused {
		if now.Before(p.until) && !slices.Contains(held, d) {
			exclude = append(exclude, d) // the store skips it too; this spares it the work
		}
	}
	return n, append(exclude, held...), held, probe
}

// futile is the last claim that excluded destinations the relay held back
// and came back short: every other ready message was claimed. Such a claim
// looks past every ready message of the destinations held back (on
// PostgreSQL, an index scan of their whole backlog), so the relay does not
// repeat it, holding back the same destinations or more, until a poll
// interval has passed or Wake (a notification) says that messages were
// committed since; it claims again at once when one of them is no longer
// held back (it then excludes fewer).
type futile struct {
	at    time.Time
	held  []string
	woken uint64 // the count of Wake calls when it was made
}

// covers reports whether a claim holding back held at now, after woken
// calls of Wake, would repeat the last futile one, within every of it.
func (f *futile) covers(held []string, now time.Time, every time.Duration, woken uint64) bool {
	if len(held) == 0 || len(f.held) == 0 || now.Sub(f.at) >= every || woken != f.woken {
		return false
	}
	for _, d := range f.held {
		if !slices.Contains(held, d) {
			return false
		}
	}
	return true
}

// unhold gives back holding room.
func (r *Relay) unhold(n int) {
	if n == 0 {
		return
	}
	r.mu.Lock()
	r.held -= n
	r.mu.Unlock()
	signal(r.freed)
}

func (r *Relay) claimLoop(ctx context.Context) {
	fails := 0
	for ctx.Err() == nil {
		// The lease is counted from before the claim was sent, so that it
		// never ends later here than in the store; and from before the
		// destinations to exclude were read, so that a pause this relay
		// learns after that is applied to what the claim returns (see
		// pausedFor).
		start, woken := time.Now(), r.woken.Load()
		n, exclude, held, probe := r.reserve()
		if n == 0 {
			var again <-chan time.Time
			r.mu.Lock()
			if left := r.cfg.pollInterval - start.Sub(r.futile.at); len(r.futile.held) > 0 && left > 0 {
				again = time.After(left)
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-r.freed:
			case <-r.wake:
			case <-again:
			}
			continue
		}
		// A claim in flight is not cut off by Stop: the database could commit
		// it after the relay gave up on it, and those messages would wait
		// for their lease. It is bounded by the lease instead (what comes
		// back later is lost anyway); what it returns after Stop began is
		// released at once.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.lease)
		batch := make([]claimed, 0, n)
		err := r.store.Claim(cctx, backend.ClaimRequest{Limit: n, Lease: r.cfg.lease, Exclude: exclude},
			func(d Delivery, c backend.Claim) { batch = append(batch, claimed{Delivery: d, Claim: c}) })
		cancel()
		if err != nil {
			batch = nil // nothing is claimed unless Claim succeeds
		}
		r.mu.Lock()
		r.reserved -= n
		if probe != 0 && probe == r.probe {
			r.probing = futile{}
		}
		r.mu.Unlock()
		if probe != 0 && len(batch) < n {
			signal(r.wake) // a claim loop that waited for this one looks again
		}
		r.unhold(n - len(batch))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			d := retry.Delay(fails, 50*time.Millisecond, 5*time.Second)
			r.log.Warn("outbox: claim failed", "err", err, "failures", fails, "retry_in", d)
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
			continue
		}
		fails = 0
		r.mu.Lock()
		if len(held) > 0 && len(batch) < n {
			r.futile = futile{at: start, held: held, woken: woken}
		}
		r.mu.Unlock()
		r.dispatch(batch, start)
		if len(batch) == n {
			// There may be more: let another claimer overlap this one.
			signal(r.wake)
			continue
		}
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-time.After(r.cfg.pollInterval):
		}
	}
}

// maxSpanNames bounds the span names a relay keeps (one per topic).
const maxSpanNames = 1024

// spanName returns the name of a publish span of topic. r.mu is held.
func (r *Relay) spanName(topic string) string {
	if n, ok := r.spanNames[topic]; ok {
		return n
	}
	n := "outbox publish " + topic
	if len(r.spanNames) < maxSpanNames {
		r.spanNames[topic] = n
	}
	return n
}

// dispatch hands a claimed batch to publishing lanes: per destination, as
// many goroutines as the destination may publish at once (at most one per
// message), each taking the batch's next message of that destination until
// none is left. Each message still waits for its destination's and the
// overall slots, as it would with a goroutine of its own, but a batch costs a
// few goroutines instead of one per message.
func (r *Relay) dispatch(batch []claimed, start time.Time) {
	if len(batch) == 0 {
		return
	}
	r.track(newLease(batch, start, start.Add(r.cfg.lease)))
	r.mu.Lock()
	for i := range batch {
		c := &batch[i]
		r.heldDest[c.Destination]++
		c.spanName = r.spanName(c.Topic)
	}
	r.mu.Unlock()
	first := batch[0].Destination
	mixed := false
	for _, c := range batch[1:] {
		if c.Destination != first {
			mixed = true
			break
		}
	}
	if !mixed {
		r.startLanes(&lane{claimed: batch})
		return
	}
	groups := map[string]*lane{}
	var order []*lane
	for _, c := range batch {
		l, ok := groups[c.Destination]
		if !ok {
			l = &lane{}
			groups[c.Destination] = l
			order = append(order, l)
		}
		l.claimed = append(l.claimed, c)
	}
	for _, l := range order {
		r.startLanes(l)
	}
}

// lane is the messages of one destination in a claimed batch, published in
// turn by up to the destination's concurrency of goroutines.
type lane struct {
	claimed []claimed
	next    atomic.Int64
}

func (r *Relay) startLanes(l *lane) {
	n := min(len(l.claimed), r.cfg.destConcurrency)
	r.pubs.Add(n)
	for range n {
		go r.runLane(l)
	}
}

func (r *Relay) runLane(l *lane) {
	defer r.pubs.Done()
	for {
		i := l.next.Add(1) - 1
		if i >= int64(len(l.claimed)) {
			return
		}
		r.deliver(l.claimed[i])
	}
}

func (r *Relay) semFor(dest string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.destSem[dest]
	if !ok {
		s = make(chan struct{}, r.cfg.destConcurrency)
		r.destSem[dest] = s
	}
	return s
}

func (r *Relay) destDone(dest string) {
	r.mu.Lock()
	h := r.heldDest[dest] - 1
	if h <= 0 {
		delete(r.heldDest, dest)
		if len(r.destSem[dest]) == 0 {
			delete(r.destSem, dest)
		}
	} else {
		r.heldDest[dest] = h
	}
	r.mu.Unlock()
	if h == r.cfg.destConcurrency+r.cfg.batchSize-1 {
		signal(r.wake) // the destination is claimable again
	}
}

func (r *Relay) deliver(c claimed) {
	out := r.publish(c)
	if c.lease.done(c.held) {
		r.untrack(c.lease)
	}
	r.destDone(c.Destination)
	s := settled{Outcome: out, key: c.Key, turn: c.turn}
	if out.Kind == backend.Pause {
		s.dest = c.Destination
	}
	r.outcomes <- s
}

func outcome(c claimed, kind backend.OutcomeKind, delay time.Duration, err string) backend.Outcome {
	return backend.Outcome{Position: c.Position, Token: c.Token, Kind: kind, Delay: delay, Error: err}
}

func release(c claimed) backend.Outcome { return outcome(c, backend.Release, 0, "") }

func (r *Relay) publish(c claimed) backend.Outcome {
	if c.Malformed != nil {
		r.log.Warn("outbox: malformed message dead-lettered", "position", c.Position, "id", c.ID, "err", c.Malformed)
		r.m.dead.Add(r.pubCtx, 1, r.m.topicAdd(c.Topic)...)
		return outcome(c, backend.DeadUnsent, 0, "malformed: "+c.Malformed.Error())
	}
	if c.Abandoned >= r.cfg.maxAbandoned {
		// Earlier claims ended without an outcome: their relays died (or
		// stalled) while they held it, perhaps because of it.
		r.m.dead.Add(r.pubCtx, 1, r.m.topicAdd(c.Topic)...)
		reason := fmt.Sprintf("abandoned %d times: the relays that claimed it died or stalled before its outcome was written back", c.Abandoned)
		r.log.Warn("outbox: message dead-lettered", "id", c.ID, "topic", c.Topic, "abandoned", c.Abandoned, "reason", reason)
		return outcome(c, backend.DeadUnsent, 0, reason)
	}
	if r.stopping.Load() {
		return release(c)
	}
	sem := r.semFor(c.Destination)
	select {
	case sem <- struct{}{}:
	case <-r.loopCtx.Done():
		return release(c)
	}
	defer func() { <-sem }()
	// A throttled destination's messages wait here, in its own slots only,
	// so that the other destinations keep the overall ones.
	if r.cfg.throttle != nil && !r.admit(c.Destination) {
		return release(c)
	}
	select {
	case r.globalSem <- struct{}{}:
	case <-r.loopCtx.Done():
		return release(c)
	}
	defer func() { <-r.globalSem }()
	start := time.Now()
	// The destination may have been paused since this message was claimed:
	// it waits, unpublished, with its schedule and attempts.
	if r.pausedFor(c.Destination, c.lease.start) {
		return release(c)
	}

	// Its lease may have run out while it waited (it is renewed, but the
	// store may be unreachable): then another relay may claim it. The
	// publish is cut off (cancel) if the lease runs out while it lasts.
	ctx, cancel := context.WithTimeoutCause(r.pubCtx, r.cfg.publishTimeout, ErrPublishTimeout)
	defer cancel()
	if !c.lease.begin(c.held, cancel, start.Add(r.cfg.publishTimeout)) {
		r.m.leaseLost.Add(ctx, 1)
		return release(c)
	}
	ctx = contextWithTraceParent(ctx, c.TraceParent)
	ctx, span := r.tracer.Start(ctx, c.spanName, r.spanOpts...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.destination.name", c.Destination),
			attribute.String("messaging.message.id", c.ID),
			attribute.Int("outbox.attempt", c.Attempt),
		)
	}
	defer span.End()
	d := c.Delivery
	if d.Headers == nil {
		d.Headers = make(map[string]string, 1)
	}
	d.Headers[PositionHeader] = strconv.FormatInt(d.Position, 10) // the relay owns the delivery's map (see Store.Claim)

	err := r.pub.Publish(ctx, d)
	took := time.Since(start)
	lost := c.lease.endPublish(c.held)
	if err == nil {
		r.m.attempt(ctx, c.Topic, "delivered", took)
		r.m.deliveries.Add(ctx, 1, r.m.topicAdd(c.Topic)...)
		return outcome(c, backend.Delivered, 0, "")
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", err, cerr)
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	if r.pubCtx.Err() != nil {
		r.m.attempt(ctx, c.Topic, "released", took)
		return release(c)
	}
	if lost {
		// Not an attempt: the outcome is unknown, and the message may be
		// another relay's already (this write-back is then refused).
		r.m.attempt(ctx, c.Topic, "lease lost", took)
		r.m.leaseLost.Add(ctx, 1)
		r.log.Warn("outbox: publish cut off: its lease ran out before it could be renewed", "id", c.ID, "topic", c.Topic)
		return release(c)
	}
	msg := err.Error()
	switch {
	case errors.Is(err, ErrPaused):
		// The pause lasts what the publisher asked (WithPause when it asked
		// nothing); WithMaxRetryAfter does not cut it: an operator lifts it.
		d, _ := retry.RetryAfter(err)
		if d <= 0 {
			d = r.cfg.pause
		}
		r.notePause(c.Destination, time.Now().Add(d))
		r.m.attempt(ctx, c.Topic, "paused", took)
		r.log.Warn("outbox: destination paused", "destination", c.Destination, "for", d, "err", err)
		return outcome(c, backend.Pause, d, msg)
	case retry.IsPermanent(err):
		r.m.attempt(ctx, c.Topic, "permanent", took)
		r.m.dead.Add(ctx, 1, r.m.topicAdd(c.Topic)...)
		r.log.Warn("outbox: message dead-lettered", "id", c.ID, "topic", c.Topic, "attempt", c.Attempt, "reason", "permanent error", "err", err)
		return outcome(c, backend.Dead, 0, msg)
	case c.Attempt >= r.cfg.maxAttempts:
		r.m.attempt(ctx, c.Topic, "failed", took)
		r.m.dead.Add(ctx, 1, r.m.topicAdd(c.Topic)...)
		r.log.Warn("outbox: message dead-lettered", "id", c.ID, "topic", c.Topic, "attempt", c.Attempt, "reason", "attempts exhausted", "err", err)
		return outcome(c, backend.Dead, 0, msg)
	}
	delay, ok := retry.RetryAfter(err)
	if !ok || delay <= 0 {
		delay = retry.Delay(c.Attempt, r.cfg.backoffBase, r.cfg.backoffMax)
	}
	delay = min(delay, r.cfg.maxRetryAfter)
	r.m.attempt(ctx, c.Topic, "failed", took)
	r.log.Debug("outbox: publish failed", "id", c.ID, "topic", c.Topic, "attempt", c.Attempt, "retry_in", delay, "err", err)
	return outcome(c, backend.Retry, delay, msg)
}

// admit waits until the throttle (WithThrottle) lets one more message of
// dest through, and reports false when the relay stops first. A refusal
// holds dest back, in memory, until its RetryAfter (a poll interval for an
// error without one); nothing is written to the store.
func (r *Relay) admit(dest string) bool {
	for {
		r.mu.Lock()
		until := r.throttled[dest]
		r.mu.Unlock()
		if wait := time.Until(until); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-r.loopCtx.Done():
				t.Stop()
				return false
			}
		}
		err := r.cfg.throttle(r.loopCtx, dest)
		if err == nil {
			return true
		}
		if r.loopCtx.Err() != nil {
			return false
		}
		d, ok := retry.RetryAfter(err)
		if !ok {
			d = r.cfg.pollInterval
			r.log.Warn("outbox: throttle failed; destination held back for a poll interval", "destination", dest, "err", err)
		}
		d = max(d, time.Millisecond)
		r.mu.Lock()
		if u := time.Now().Add(d); u.After(r.throttled[dest]) {
			r.throttled[dest] = u
		}
		r.mu.Unlock()
	}
}

// settleLinger is how long a write-back waits, once, for more outcomes when
// it has fewer than the relay's messages being published: one write-back of
// a whole claim costs the database about what one of a single message does.
const settleLinger = 500 * time.Microsecond

func (r *Relay) settleLoop() {
	defer r.settlers.Done()
	batch := make([]backend.Outcome, 0, 256)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var pauses []string        // the destinations the batch pauses
	var finished []finishedKey // the keyed messages the batch finishes: the next of their key may go now
	add := func(o settled) {
		if o.key != "" && done(o.Kind) {
			finished = append(finished, finishedKey{i: len(batch), key: o.key, turn: o.turn})
		}
		batch = append(batch, o.Outcome)
		if o.dest != "" {
			pauses = append(pauses, o.dest)
		}
	}
	for first := range r.outcomes {
		batch, pauses, finished = batch[:0], pauses[:0], finished[:0]
		add(first)
		lingered := false
	drain:
		for len(batch) < maxSettle {
			select {
			case o, ok := <-r.outcomes:
				if !ok {
					break drain
				}
				add(o)
				continue
			default:
			}
			// Nothing more is ready: wait a little, once, if more
			// messages are being published.
			if lingered || !r.publishing(len(batch)) {
				break
			}
			lingered = true
			linger.Reset(settleLinger)
			select {
			case o, ok := <-r.outcomes:
				linger.Stop() // no stale tick is received after Stop (Go 1.23)
				if !ok {
					break drain
				}
				add(o)
			case <-linger.C:
				break drain
			}
		}
		readied := r.flush(batch, finished)
		if len(pauses) > 0 {
			r.pausesWritten(pauses)
		}
		r.unhold(len(batch))
		if readied {
			// The next message of a key may be ready now.
			signal(r.wake)
		}
	}
}

// publishing reports whether the relay holds more messages than the n
// outcomes in hand (claimed messages whose outcome is still to come). The
// room a claim in flight has taken does not count: it may come back empty.
func (r *Relay) publishing(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held-r.reserved > n
}

// done reports whether an outcome of kind ends the message (delivered or
// dead), so that the next message of its key may be ready.
func done(kind backend.OutcomeKind) bool {
	return kind == backend.Delivered || kind == backend.Dead || kind == backend.DeadUnsent
}

// nextClaimer is a Store whose write-back can claim, for the relay that
// settles, the next message of each key it finishes (sqloutbox's
// SettleAndClaim on PostgreSQL).
type nextClaimer interface {
	SettleAndClaim(ctx context.Context, outcomes []backend.Outcome, lease time.Duration, claimed func(Delivery, backend.Claim)) ([]int64, error)
}

// flush writes batch back, of which finished outcomes finish keyed
// messages, and reports whether the write-back may have made messages
// ready that a claim should look for: the next message of a finished key.
// When the store can, the write-back also claims the next message of each
// finished key, and the relay publishes it as it does what it claims; then
// only a key whose next message it did not claim (there is none, or it is
// not to go now, or the outcome was refused, or the key yielded) may have
// one ready, so that a write-back that claimed them all does not wake the
// claim loops for a claim that would find nothing.
//
// A key's turn lasts at most maxTurn messages in a row: the write-back
// that finishes the last of them yields the key (backend.Outcome.Yield),
// whose next message is then made ready, behind the messages already
// ready, and its room goes to the claim loops, which take the oldest ready
// messages (and learn of messages committed meanwhile). Otherwise a full
// relay would keep the keys it holds, message after message, while older
// messages of other keys waited for as long as the held keys had messages.
// Turns keep each key's share: a key waits for the keys ahead of it in the
// ready order, as it would with no write-back claiming, and then goes for
// up to maxTurn messages; and they spare the database most of the writes
// that make a parked message ready (a new version of its row with its
// index entries), which a write-back's claim does not make (it rewrites
// the row in place).
func (r *Relay) flush(batch []backend.Outcome, finished []finishedKey) (readied bool) {
	nc, _ := r.store.(nextClaimer)
	if nc != nil {
		for _, f := range finished {
			if f.turn+1 >= maxTurn {
				batch[f.i].Yield = true
			}
		}
	}
	for fails := 1; ; fails++ {
		var refused []int64
		var err error
		if nc != nil && len(finished) > 0 && !r.stopping.Load() {
			var next []claimed
			start := time.Now() // the lease counts from before the statement, as a claim's
			refused, err = nc.SettleAndClaim(r.setCtx, batch, r.cfg.lease, func(d Delivery, c backend.Claim) {
				if next == nil {
					next = make([]claimed, 0, len(finished)) // at most one per finished key
				}
				next = append(next, claimed{Delivery: d, Claim: c})
			})
			if err == nil {
				setTurns(next, finished)
				r.dispatchNext(next, start)
				readied = len(next) < len(finished)
			}
		} else {
			refused, err = r.store.Settle(r.setCtx, batch)
			readied = len(finished) > 0
		}
		if err == nil {
			if len(refused) > 0 {
				r.m.leaseLost.Add(r.setCtx, int64(len(refused)))
				r.log.Warn("outbox: write-back refused: the lease was taken over", "refused", len(refused))
			}
			return readied
		}
		if r.setCtx.Err() != nil {
			r.log.Warn("outbox: write-back abandoned at stop; the leases will expire", "messages", len(batch), "err", err)
			return false
		}
		d := retry.Delay(fails, 50*time.Millisecond, 5*time.Second)
		r.log.Warn("outbox: write-back failed", "err", err, "failures", fails, "retry_in", d)
		select {
		case <-r.setCtx.Done():
		case <-time.After(d):
		}
	}
}

// setTurns gives each message a write-back claimed the turn after its
// predecessor's, found by key among the finished outcomes.
func setTurns(next []claimed, finished []finishedKey) {
	if len(next) == 0 {
		return
	}
	turns := make(map[string]int, len(finished))
	for _, f := range finished {
		turns[f.key] = f.turn
	}
	for i := range next {
		if t, ok := turns[next[i].Key]; ok {
			next[i].turn = t + 1
		}
	}
}

// dispatchNext publishes the messages a write-back claimed, or, once the
// relay is stopping, releases them at once. It releases at once as well
// those of a destination this relay knows to be paused: the write-back
// claimed them without seeing the pause when it was recorded by the same
// statement or by one that committed after that statement began (a claim
// excludes the destinations the relay knows paused; see pausedFor).
func (r *Relay) dispatchNext(next []claimed, start time.Time) {
	if len(next) == 0 {
		return
	}
	var back []claimed
	r.mu.Lock()
	if len(r.paused) > 0 {
		now := time.Now()
		keep := next[:0]
		for _, c := range next {
			if p, ok := r.paused[c.Destination]; ok && now.Before(p.until) {
				back = append(back, c)
			} else {
				keep = append(keep, c)
			}
		}
		next = keep
	}
	r.mu.Unlock()
	if len(next) > 0 {
		r.dispatchMu.Lock()
		if !r.stopping.Load() {
			r.mu.Lock()
			r.held += len(next) // the write-back frees the room of its batch after this
			r.mu.Unlock()
			r.dispatch(next, start)
			next = nil
		}
		r.dispatchMu.Unlock()
		back = append(back, next...)
	}
	if len(back) == 0 {
		return
	}
	outs := make([]backend.Outcome, len(back))
	for i, c := range back {
		outs[i] = release(c)
	}
	if _, err := r.store.Settle(r.setCtx, outs); err != nil {
		r.log.Warn("outbox: release failed; the leases will expire", "messages", len(outs), "err", err)
	}
}

func (r *Relay) listenLoop(ctx context.Context) {
	for fails := 0; ctx.Err() == nil; {
		start := time.Now()
		err := r.cfg.notifier.Listen(ctx, r.Wake)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			fails = 0
		}
		fails++
		d := retry.Delay(fails, 100*time.Millisecond, 30*time.Second)
		r.log.Warn("outbox: notifier stopped; polling meanwhile", "err", err, "retry_in", d)
		r.Wake() // a notification may have been lost
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

func (r *Relay) statsLoop(ctx context.Context) {
	for {
		s, err := r.store.Stats(ctx)
		if err == nil {
			r.m.stats.Store(&s)
		} else if ctx.Err() == nil {
			r.log.Warn("outbox: stats failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(statsInterval):
		}
	}
}

// isNil reports whether v is nil or a typed nil (a nil pointer, map, func or
// channel in an interface), which would panic when used.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
