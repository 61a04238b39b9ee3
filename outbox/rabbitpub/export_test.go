package rabbitpub

import amqp "github.com/rabbitmq/amqp091-go"

// Reader is a session's reader of returned messages, without a connection,
// driven by a test as amqp091-go and Publish drive it. The reader runs one
// round of its loop per token sent on Gate.
type Reader struct {
	s    *session
	gate chan struct{}
}

// NewReader starts the reader of a session made as dial makes it; it waits
// for a token on Gate before each round.
func NewReader() *Reader {
	r := &Reader{s: newSession(nil, nil), gate: make(chan struct{})}
	r.s.testHookRead = func() { <-r.gate }
	go r.s.read()
	return r
}

// Gate is the channel on which the reader takes one token per round.
func (r *Reader) Gate() chan<- struct{} { return r.gate }

// Return hands the broker's basic.return of id to the session, as
// amqp091-go does (before it processes the basic.ack that follows it).
func (r *Reader) Return(id string) {
	r.s.returns <- amqp.Return{MessageId: id, ReplyCode: amqp.NoRoute, ReplyText: "NO_ROUTE"}
}

// Track registers a publish of id in flight, as Publish does before
// publishing; the returned func ends it.
func (r *Reader) Track(id string) func() { return r.s.track(id) }

// Confirmed asks, as Publish does once the broker confirmed id, whether
// the broker returned it.
func (r *Reader) Confirmed(id string) bool {
	_, ok := r.s.returnOf(id)
	return ok
}

// Close closes the returns channel, as amqp091-go does when the channel
// closes, and steps the reader until it stopped.
func (r *Reader) Close() {
	close(r.s.returns)
	for {
		select {
		case r.gate <- struct{}{}:
		case <-r.s.done:
			return
		}
	}
}
