//go:build !race

package outboxtest

// raceSlowdown is how much slower the relays' work runs under the race
// detector; the few assertions on wall-clock time allow for it.
const raceSlowdown = 1
