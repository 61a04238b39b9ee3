package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs the example: the flaky POST is written once, the outage
// opens the breaker once, the call during the open period never reaches the
// API, and the probe after it succeeds.
func TestSmoke(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	// A longer open period than the default leaves a slow machine more time
	// for the four failing attempts of the outage call.
	got, err := run(ctx, config{openFor: 2 * time.Second}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	// 4 attempts of the flaky call, 4 during the outage, 1 probe.
	want := summary{Writes: 2, ServerRequests: 9, BreakerOpenings: 1}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
