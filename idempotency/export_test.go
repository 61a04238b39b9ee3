package idempotency

import (
	"context"
	"fmt"

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
		sh.remove(r)
		s.forget(r)
	}
	return ok
}

// CheckMemoryStore returns an error if a shard's order and map disagree:
// a record missing from either, in another slot than its own, or with
// another end than its sweepEnd beside it.
func CheckMemoryStore(s *MemoryStore) error {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		err := checkShard(sh)
		sh.mu.Unlock()
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}

func checkShard(sh *memoryShard) error {
	if len(sh.order) != len(sh.records) {
		return fmt.Errorf("%d records in order, %d in the map", len(sh.order), len(sh.records))
	}
	for i, slot := range sh.order {
		r := slot.rec
		switch {
		case r == nil:
			return fmt.Errorf("slot %d empty", i)
		case int(r.slot) != i:
			return fmt.Errorf("record %q in slot %d says %d", r.key, i, r.slot)
		case sh.records[r.key] != r:
			return fmt.Errorf("record %q in slot %d is not the map's", r.key, i)
		case slot.end != r.sweepEnd():
			return fmt.Errorf("record %q: end %d beside it, %d in it", r.key, slot.end, r.sweepEnd())
		}
	}
	return nil
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
