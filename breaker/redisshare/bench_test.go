package redisshare_test

import (
	"context"
	"sync"
	"testing"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

// BenchmarkSharedCall compares a call through a local breaker with a call
// through a breaker whose state is shared through Redis while the share's
// loop runs (a pass every 10ms).
func BenchmarkSharedCall(b *testing.B) {
	c := sharedClient(b)
	work := func(context.Context) (int, error) { return 1, nil }
	ctx := context.Background()
	b.Run("local", func(b *testing.B) {
		br, err := breaker.New("bench", breaker.WithLogger(quiet))
		if err != nil {
			b.Fatal(err)
		}
		benchcpu.Report(b, func() {
			for b.Loop() {
				breaker.Execute(ctx, br, work)
			}
		})
	})
	b.Run("shared", func(b *testing.B) {
		rs := replicas(b, c, 1, quiet)[0]
		runCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { rs.share.Run(runCtx) })
		defer func() { cancel(); wg.Wait() }()
		benchcpu.Report(b, func() {
			for b.Loop() {
				breaker.Execute(ctx, rs.b, work)
			}
		})
	})
}
