package breaker_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func goleakVerifyNone(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t)
}
