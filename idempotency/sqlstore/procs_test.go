package sqlstore_test

import "runtime"

// benchProcs yields once per GOMAXPROCS.
func benchProcs() []struct{} { return make([]struct{}, runtime.GOMAXPROCS(0)) }
