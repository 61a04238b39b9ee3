package idempotency

import (
	"context"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

// Test hooks: unexported pieces the external tests reach.

// ParseKey is parseKey.
var ParseKey = parseKey

// MaxKeyLength is the longest key the middleware accepts.
const MaxKeyLength = maxKeyLength

// Len returns the number of records s holds, expired ones not yet removed
// included.
func Len(s *MemoryStore) int { return s.len() }

// Forget removes the record of key from s, whatever its state, and
// reports whether there was one.
func Forget(s *MemoryStore, key string) bool {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.records[key]
	if ok {
		delete(sh.records, key)
		s.forget(r)
	}
	return ok
}

// ProblemStatus returns the status the middleware answers p with.
func ProblemStatus(p Problem) int {
	switch p {
	case httpx.ProblemBodyTooLarge:
		return 413
	case httpx.ProblemBodyUnreadable:
		return 400
	}
	return p.status()
}

// ClaimTxFrom returns the ClaimTx that ctx carries, or nil.
func ClaimTxFrom(ctx context.Context) ClaimTx {
	tx, _ := ctx.Value(txKey{}).(ClaimTx)
	return tx
}

// JSONCodecForTest is the default codec.
var JSONCodecForTest Codec = jsonCodec{}
