// Package benchcpu reads this process's CPU time for the benchmarks, which
// report it beside the wall time: on a machine shared with other work, CPU
// time per operation moves much less than wall time per operation.
package benchcpu
