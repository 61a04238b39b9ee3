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
