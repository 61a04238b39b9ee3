package message

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"

	"github.com/steadfast-go/steadfast/outbox"
)

// MaxNameLen is the longest topic, destination and partition key, in bytes.
const MaxNameLen = 255

// Prepare validates msgs for a store's Enqueue and returns copies with every empty ID
// set to a new UUIDv7 and every empty destination set to the topic,
// together with each message's headers encoded as JSON ("" for none). It
// refuses, with an *outbox.InvalidMessageError, what Check refuses and a
// payload over maxPayload bytes.
func Prepare(msgs []outbox.Message, maxPayload int) ([]outbox.Message, []string, error) {
	out := make([]outbox.Message, len(msgs))
	hs := make([]string, len(msgs))
	for i, m := range msgs {
		if m.ID == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, nil, fmt.Errorf("outbox: new message id: %w", err)
			}
			m.ID = id.String()
		}
		if m.Destination == "" {
			m.Destination = m.Topic
		}
		if reason := Check(m); reason != "" {
			return nil, nil, &outbox.InvalidMessageError{Index: i, Reason: reason}
		}
		if len(m.Payload) > maxPayload {
			return nil, nil, &outbox.InvalidMessageError{Index: i, Reason: fmt.Sprintf("payload of %d bytes is over the limit of %d", len(m.Payload), maxPayload)}
		}
		if len(m.Headers) > 0 {
			b, err := json.Marshal(m.Headers)
			if err != nil {
				return nil, nil, &outbox.InvalidMessageError{Index: i, Reason: "headers: " + err.Error()}
			}
			hs[i] = string(b)
		}
		out[i] = m
	}
	return out, hs, nil
}

// Check returns why m cannot be stored or delivered as it is, or "". Stores
// run it on every message Enqueue writes and on every row Claim reads (a row
// written behind the API's back is dead-lettered with the reason).
func Check(m outbox.Message) string {
	switch {
	case strings.TrimSpace(m.Topic) == "":
		return "empty topic"
	case len(m.Topic) > MaxNameLen:
		return fmt.Sprintf("topic longer than %d bytes", MaxNameLen)
	case strings.TrimSpace(m.Destination) == "":
		return "empty destination"
	case len(m.Destination) > MaxNameLen:
		return fmt.Sprintf("destination longer than %d bytes", MaxNameLen)
	case len(m.Key) > MaxNameLen:
		return fmt.Sprintf("partition key longer than %d bytes", MaxNameLen)
	}
	if _, err := uuid.Parse(m.ID); err != nil {
		return fmt.Sprintf("id %q is not a UUID", m.ID)
	}
	for k := range m.Headers {
		if k == "" {
			return "empty header name"
		}
	}
	return ""
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when
// ctx carries no valid span context. The relay continues that trace when it
// publishes.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}
