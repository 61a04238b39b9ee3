package sqlstore_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/idempotency"
)

// FuzzRoundTrip: on SQLite, any key up to MaxKeyLen bytes and any response
// are stored byte for byte under exactly that key (no folding, trimming or
// truncation); longer keys are refused with ErrTooLarge.
func FuzzRoundTrip(f *testing.F) {
	s := newStore(f, steadfast.SQLite, 2)
	f.Add("k", []byte("r"))
	f.Add("Ключ \x00 nul", []byte{0, 0xff})
	f.Add(" padded ", []byte{})
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, suffix string, resp []byte) {
		ctx := context.Background()
		// A fresh prefix per input: a claim that is not acquired would mean
		// two different keys were conflated.
		key := strconv.FormatInt(n.Add(1), 36) + ":" + suffix
		c, err := s.Claim(ctx, key, "fp", time.Hour)
		switch {
		case len(key) > 1024:
			if !errors.Is(err, idempotency.ErrTooLarge) {
				t.Fatalf("long key: %v", err)
			}
			return
		case err != nil:
			t.Fatal(err)
		}
		if !c.Acquired {
			t.Fatalf("fresh key %q not acquired: conflated with the record %+v", key, c.Record)
		}
		if err := s.Complete(ctx, key, c.Token, resp, time.Hour); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Get(ctx, key)
		if err != nil || rec.Status != idempotency.StatusCompleted || !bytes.Equal(rec.Response, resp) {
			t.Fatalf("get %q = %+v, %v; want the response stored", key, rec, err)
		}
	})
}
