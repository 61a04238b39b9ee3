//go:build !unix

package retry_test

import "testing"

// reportCPU runs loop; the CPU time is not read on this platform.
func reportCPU(b *testing.B, loop func()) {
	b.Helper()
	b.ReportAllocs()
	loop()
}
