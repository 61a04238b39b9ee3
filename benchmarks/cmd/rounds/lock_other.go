//go:build !unix

package main

import "errors"

// acquire refuses a lock where flock does not exist.
func acquire(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	return nil, errors.New("-lock needs flock (unix)")
}
