package rabbitpub_test

import (
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/steadfast-go/steadfast/outbox/rabbitpub"
)

// TestReturnSeenBeforeConfirm drives the session's reader as amqp091-go
// and Publish drive it, with the race window of a returned message held
// open on every round: while the reader is busy (held before its next
// round), the client hands over the basic.return and then processes the
// basic.ack, and the confirmed publish asks the reader for its return.
// synctest.Wait makes sure everything that can happen before the reader
// goes on has happened. A returned message must be seen as returned every
// time, never reported delivered.
func TestReturnSeenBeforeConfirm(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := rabbitpub.NewReader()
		defer r.Close()
		for i := range 200 {
			id := fmt.Sprintf("m-%d", i)
			returned := i%4 != 3
			untrack := r.Track(id)
			acked := make(chan struct{})
			go func() { // amqp091-go's dispatcher: the return, then the ack
				if returned {
					r.Return(id)
				}
				close(acked)
			}()
			seen := make(chan bool, 1)
			go func() { // Publish, woken by the ack
				<-acked
				seen <- r.Confirmed(id)
			}()
			// Everything that can happen before the reader takes its next
			// round has happened; then the reader goes on a round at a time
			// until the publish has its answer (and is held again).
			synctest.Wait()
			var got bool
		steps:
			for {
				r.Gate() <- struct{}{}
				synctest.Wait()
				select {
				case got = <-seen:
					break steps
				default:
				}
			}
			untrack()
			if got != returned {
				t.Fatalf("round %d: the broker returned the message: %v; the confirmed publish saw a return: %v", i, returned, got)
			}
		}
	})
}
