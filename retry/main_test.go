package retry_test

import (
	"io"
	"log"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quietLog discards a test server's error log (expected TLS handshake errors).
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
