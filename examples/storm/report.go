package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// counters are what the storm counts while it runs; every field is updated
// atomically by the parts that play the storm.
type counters struct {
	eventsPlanned   atomic.Int64 // unique provider events
	dropped         atomic.Int64 // events the provider created and never sent
	listPages       atomic.Int64 // pages of the events list served
	list429         atomic.Int64 // list requests answered 429 with Retry-After
	list503         atomic.Int64 // list requests answered 503
	byPoller        atomic.Int64 // events the poller applied (the report reads the database)
	pollerDups      atomic.Int64 // events the poller read and found applied (steadfast.catchup.events metric)
	deliveries      atomic.Int64 // webhook deliveries sent (duplicates and redeliveries included)
	deliveryErrors  atomic.Int64 // deliveries answered with a non-2xx status (the provider retried them)
	replayed        atomic.Int64 // deliveries answered by the idempotency middleware's replay
	conflicts       atomic.Int64 // deliveries answered 409 (a duplicate in flight)
	inboxDuplicates atomic.Int64 // deliveries that reached the handler but were absorbed by the inbox
	applied         atomic.Int64 // events applied to an order
	stale           atomic.Int64 // events the ordering guard reported stale
	charges         atomic.Int64 // charge calls the provider executed
	chargeAttempts  atomic.Int64 // HTTP attempts of the outbound charge client
	chargeRetries   atomic.Int64 // retries of the outbound charge client
	chargeFallbacks atomic.Int64 // orders whose charge the fallback parked (circuit open)
	breakerOpenings atomic.Int64 // times a circuit opened
	outboxEnqueued  atomic.Int64 // outbox messages committed
	partnerAttempts atomic.Int64 // HTTP requests the partner received
	partnerReceived atomic.Int64 // distinct outbox messages the partner accepted
	partnerDups     atomic.Int64 // messages the partner accepted more than once
	afterCrash      atomic.Int64 // messages delivered again after the relay crash
	receiverCrashes atomic.Int64 // receiver instances killed mid-flight
}

// check is one line of the final report.
type check struct {
	name string
	got  string
	ok   bool
}

func (c check) String() string {
	verdict := "PASS"
	if !c.ok {
		verdict = "FAIL"
	}
	return fmt.Sprintf("  %-52s %-12s %s", c.name, c.got, verdict)
}

// progress shows one live line until stop is closed: redrawn in place on
// a terminal, printed every few seconds elsewhere (CI logs).
func progress(w io.Writer, c *counters, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	live := isTerminal(w)
	every := 200 * time.Millisecond
	if !live {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	start := time.Now()
	line := func() string {
		return fmt.Sprintf("%5.1fs │ webhooks %4d/%d events done, %d deliveries │ outbox %4d/%d at the partner, %d calls",
			time.Since(start).Seconds(), c.applied.Load()+c.stale.Load(), c.eventsPlanned.Load(), c.deliveries.Load(),
			c.partnerReceived.Load(), c.outboxEnqueued.Load(), c.partnerAttempts.Load())
	}
	for {
		select {
		case <-stop:
			if live {
				fmt.Fprintf(w, "\r%s\n", line())
			}
			return
		case <-t.C:
			if live {
				fmt.Fprintf(w, "\r%s", line())
			} else {
				fmt.Fprintln(w, line())
			}
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printReport(w io.Writer, c *counters, checks []check, elapsed time.Duration) bool {
	fmt.Fprintf(w, "\nstorm report (%.1fs)\n", elapsed.Seconds())
	rows := [][2]string{
		{"provider events (unique)", fmt.Sprint(c.eventsPlanned.Load())},
		{"webhook deliveries (duplicates, redeliveries)", fmt.Sprint(c.deliveries.Load())},
		{"  answered 5xx, redelivered by the provider", fmt.Sprint(c.deliveryErrors.Load())},
		{"  duplicates replayed by the idempotency middleware", fmt.Sprint(c.replayed.Load())},
		{"  duplicates in flight answered 409", fmt.Sprint(c.conflicts.Load())},
		{"  duplicates absorbed by the inbox", fmt.Sprint(c.inboxDuplicates.Load())},
		{"  stale events ignored by the ordering guard", fmt.Sprint(c.stale.Load())},
		{"  receiver crashes (sessions killed mid-transaction)", fmt.Sprint(c.receiverCrashes.Load())},
		{"events dropped by the provider (never sent)", fmt.Sprint(c.dropped.Load())},
		{"  list pages read by the catch-up poller", fmt.Sprintf("%d (and %d 429, %d 503)", c.listPages.Load(), c.list429.Load(), c.list503.Load())},
		{"  applied by the poller (webhook lost or late)", fmt.Sprint(c.byPoller.Load())},
		{"  found applied by the poller (inbox, overlap)", fmt.Sprint(c.pollerDups.Load())},
		{"charges executed by the provider", fmt.Sprint(c.charges.Load())},
		{"  outbound charge attempts / retries", fmt.Sprintf("%d / %d", c.chargeAttempts.Load(), c.chargeRetries.Load())},
		{"  charges parked by the fallback, charged later", fmt.Sprint(c.chargeFallbacks.Load())},
		{"  circuit openings (charge client, relay)", fmt.Sprint(c.breakerOpenings.Load())},
		{"outbox messages committed", fmt.Sprint(c.outboxEnqueued.Load())},
		{"  partner calls (timeouts, 503s, outage included)", fmt.Sprint(c.partnerAttempts.Load())},
		{"  messages redelivered after the relay crash", fmt.Sprint(c.afterCrash.Load())},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-52s %s\n", r[0], r[1])
	}
	fmt.Fprintln(w, "\nchecks")
	ok := true
	for _, ch := range checks {
		fmt.Fprintln(w, ch)
		ok = ok && ch.ok
	}
	if ok {
		fmt.Fprintln(w, "\nall checks PASS")
	} else {
		fmt.Fprintln(w, "\n"+strings.ToUpper("some checks FAIL"))
	}
	return ok
}
