package retry_test

import (
	"io"
	"log"
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLog discards a test server's error log (expected TLS handshake errors).
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// quiet is a logger that discards, for tests that run out of budget on
// purpose.
var quiet = slog.New(slog.DiscardHandler)
