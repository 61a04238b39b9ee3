// Package backend is the contract between an outbox.Relay and the store it
// drives, for those who write a store: the claim request, what a claim says
// of each message beyond its outbox.Delivery, and the outcomes the relay
// writes back. Users of the outbox never need it: they hand a store
// (sqloutbox.New, or one of their own) to outbox.NewRelay.
//
// The outbox.Store interface, which a store implements, is declared in
// package outbox (next to the Record and Stats its operator methods return)
// and uses the types of this package; outbox/outboxtest checks a store
// against the whole contract. This package imports nothing of the outbox,
// so that package outbox can import it.
package backend
