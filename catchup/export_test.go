package catchup

// SetMaxPageBytes sets the bound of a page's body for a test and returns
// what restores it. Tests that call it do not run in parallel.
func SetMaxPageBytes(n int) (restore func()) {
	old := maxPageBytes
	maxPageBytes = n
	return func() { maxPageBytes = old }
}
