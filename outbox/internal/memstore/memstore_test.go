package memstore_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/outbox/internal/memstore"
	"github.com/steadfast-go/steadfast/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Harness {
		s := memstore.New()
		return outboxtest.Harness{
			Store: s,
			Begin: func(ctx context.Context) (outboxtest.Tx, error) { return s.Begin(ctx) },
			Corrupt: func(ctx context.Context, id string, headers map[string]string) error {
				if headers == nil { // the memory store has no encoding to damage
					headers = map[string]string{"": "an empty header name"}
				}
				s.Corrupt(id, headers)
				return nil
			},
			SingleWriter: true,
		}
	})
}
