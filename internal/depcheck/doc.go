// Package depcheck holds no code: its test proves, with go list -deps, that a
// program using steadfast's SQL backends links only the database drivers it
// imports itself (the backends import none).
package depcheck
