// Package message holds what every store of the outbox does to a message
// before it writes it and after it reads it back: the validation rules (the
// same on every store, checked by outboxtest), the ids and destinations
// filled in, and the trace context recorded.
package message
