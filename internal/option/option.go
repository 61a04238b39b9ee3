// Package option is the one functional-option mechanism of every steadfast
// package. Each package declares
//
//	type Option interface{ setting() *option.Setting[config] }
//
// with an unexported method, so that only its own With... functions make
// options, and applies them with Apply. One Option type per package serves
// every constructor of the package; an option that does not apply to a
// constructor is refused by it with an error that names both.
package option

import (
	"fmt"
	"strings"
)

// Setting is one option: the name of the function that made it (WithLease),
// the constructors it applies to (empty: every constructor of the package)
// and what it sets.
type Setting[C any] struct {
	Name string
	For  []string
	Set  func(*C) error
}

// Apply applies n options in order to c, for the constructor ctor of package
// pkg (both as the user writes them: "retry", "NewTransport"). at(i) returns
// the i-th option's setting, or nil for a nil option. The error names the
// package, the constructor and the option at fault:
//
//	retry: NewTransport: WithLease: lease 0s must be positive
//	idempotency: Middleware: WithCodec applies to NewRunner, not Middleware
//	breaker: New: option 2 is nil
func Apply[C any](pkg, ctor string, c *C, n int, at func(i int) *Setting[C]) error {
	for i := 0; i < n; i++ {
		s := at(i)
		if s == nil || s.Set == nil {
			return fmt.Errorf("%s: %s: option %d is nil", pkg, ctor, i)
		}
		if len(s.For) > 0 && !contains(s.For, ctor) {
			return fmt.Errorf("%s: %s: %s applies to %s, not %s",
				pkg, ctor, s.Name, strings.Join(s.For, " and "), ctor)
		}
		if err := s.Set(c); err != nil {
			return fmt.Errorf("%s: %s: %s: %w", pkg, ctor, s.Name, err)
		}
	}
	return nil
}

// Errorf returns an error for a combination of options found invalid after
// all were applied. Name in it the option the user gave (and the default of
// the other, where the user did not give it).
func Errorf(pkg, ctor, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s", pkg, ctor, fmt.Errorf(format, args...))
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
