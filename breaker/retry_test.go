package breaker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/steadfast-go/steadfast/breaker"
	"github.com/steadfast-go/steadfast/retry"
)

// TestRetryAroundBreaker composes retry (unchanged, knowing nothing of
// breaker) around an open breaker: the open error's RetryAfter() is the
// remaining open time, and retry either waits it out, when it fits its cap
// and the deadline, or stops at once.
func TestRetryAroundBreaker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		open        time.Duration // open duration of the breaker
		maxWait     time.Duration // retry.WithMaxRetryAfter
		deadline    time.Duration
		wantWaited  bool
		wantReached int32 // calls that reached the provider after the circuit opened
	}{
		{"remaining open time beyond the cap stops the retries", time.Hour, 30 * time.Second, time.Minute, false, 0},
		{"remaining open time beyond the deadline stops the retries", 20 * time.Second, 30 * time.Second, time.Second, false, 0},
		{"remaining open time that fits is waited out", 50 * time.Millisecond, 30 * time.Second, time.Minute, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBreaker(t, breaker.WithConsecutiveFailures(1), breaker.WithOpenDuration(tt.open))
			require.ErrorIs(t, call(b, errBoom), errBoom)
			require.Equal(t, breaker.Open, b.State())

			p, err := retry.New(retry.WithMaxAttempts(5), retry.WithBackoff(time.Millisecond, time.Millisecond),
				retry.WithMaxRetryAfter(tt.maxWait), retry.WithoutBudget(), retry.WithLogger(quiet))
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()

			var attempts, reached atomic.Int32
			start := time.Now()
			got, err := retry.DoValue(ctx, p, func(ctx context.Context) (string, error) {
				attempts.Add(1)
				return breaker.Execute(ctx, b, func(context.Context) (string, error) {
					reached.Add(1)
					return "paid", nil
				})
			})
			assert.Equal(t, tt.wantReached, reached.Load())
			if !tt.wantWaited {
				require.ErrorIs(t, err, retry.ErrGaveUp)
				require.ErrorIs(t, err, breaker.ErrOpen, "the give-up does not unwrap to the open error")
				var rae *retry.RetryAfterError
				require.ErrorAs(t, err, &rae)
				assert.Greater(t, rae.Delay, rae.Limit)
				assert.Equal(t, int32(1), attempts.Load(), "retry went on against an open circuit")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "paid", got)
			assert.GreaterOrEqual(t, time.Since(start), tt.open-5*time.Millisecond,
				"the call succeeded before the circuit could have let it through")
			assert.GreaterOrEqual(t, attempts.Load(), int32(2))
			assert.Equal(t, breaker.Closed, b.State())
		})
	}
}
