package durabletest

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

// Paired runs base and store alternately from callers concurrent callers
// (RunParallel with GOMAXPROCS*parallelism goroutines), so that both see the
// same load on a shared machine, and reports each one's mean latency
// (base-ns/op, store-ns/op) and store/base, the latency ratio; with a fixed
// number of callers, base/store is the store's share of the baseline's
// throughput.
func Paired(b *testing.B, callers int, base, store func(ctx context.Context) error) {
	b.Helper()
	b.ReportAllocs()
	b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
	var flip, baseNs, storeNs, nBase, nStore atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			f, ns, n := base, &baseNs, &nBase
			if flip.Add(1)%2 == 0 {
				f, ns, n = store, &storeNs, &nStore
			}
			start := time.Now()
			if err := f(ctx); err != nil {
				b.Error(err)
				return
			}
			ns.Add(int64(time.Since(start)))
			n.Add(1)
		}
	})
	if nBase.Load() == 0 || nStore.Load() == 0 {
		return
	}
	bn := float64(baseNs.Load()) / float64(nBase.Load())
	sn := float64(storeNs.Load()) / float64(nStore.Load())
	b.ReportMetric(bn, "base-ns/op")
	b.ReportMetric(sn, "store-ns/op")
	b.ReportMetric(sn/bn, "store/base")
}

// NewKey returns the store side of the new-key benchmark: it claims the
// next key from s and completes it with resp, kept for 24 hours.
func NewKey(s idempotency.Store, next func() string, resp []byte) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		k := next()
		c, err := s.Claim(ctx, k, "fp", time.Minute)
		if err != nil {
			return err
		}
		return s.Complete(ctx, k, c.Token, resp, 24*time.Hour)
	}
}
