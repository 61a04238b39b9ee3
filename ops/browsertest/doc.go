// Package browsertest drives the operator's page (package ops) in a real
// browser: Chromium headless through chromedp, against a real PostgreSQL.
// It is a module of its own so that the library's go.mod never requires a
// browser driver, and `go test ./...` at the root never needs Chromium.
//
// Run it with TEST_POSTGRES_URL set and chromium on the PATH (Debian's
// package; running as root, it is started with --no-sandbox):
//
//	cd ops/browsertest && go test ./...
//
// Without either it skips, saying why; under CI=true it fails instead.
// TEST_SCREENSHOTS=dir saves the pages it looks at, at desktop and phone
// widths, as PNG files in dir.
package browsertest
