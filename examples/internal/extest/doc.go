// Package extest holds what the examples' smoke tests share: unique names for
// the tables and streams a test creates, and their removal at its end.
package extest
