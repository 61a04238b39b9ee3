package benchcpu_test

import (
	"testing"

	"github.com/steadfast-go/steadfast/internal/benchcpu"
)

func TestNowAdvances(t *testing.T) {
	start, ok := benchcpu.Now()
	if !ok {
		t.Skip("CPU time is not read on this platform")
	}
	x := 0
	for i := range 50_000_000 {
		x += i
	}
	if end, _ := benchcpu.Now(); end <= start {
		t.Errorf("CPU time went from %v to %v over a busy loop (%d)", start, end, x)
	}
}
