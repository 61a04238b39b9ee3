package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
)

// DefaultMaxPayload is the largest payload a backend accepts unless told
// otherwise: 1 MiB.
const DefaultMaxPayload = 1 << 20

// ErrInvalidMessage is matched by the error of a backend's Enqueue when a
// message cannot be stored; see InvalidMessageError.
var ErrInvalidMessage = errors.New("outbox: invalid message")

// InvalidMessageError says which message of an Enqueue call was refused and
// why. It matches ErrInvalidMessage. Nothing of the call was written.
type InvalidMessageError struct {
	// Index is the message's index in the Enqueue call.
	Index int
	// Reason says what is wrong, such as "empty topic".
	Reason string
}

// Error names the message and the reason.
func (e *InvalidMessageError) Error() string {
	return fmt.Sprintf("outbox: message %d: %s", e.Index, e.Reason)
}

// Is reports whether target is ErrInvalidMessage.
func (e *InvalidMessageError) Is(target error) bool { return target == ErrInvalidMessage }

// Prepare validates msgs for a backend's Enqueue and returns copies with
// every empty ID set to a new UUIDv7, together with the W3C traceparent of
// the span in ctx (empty when ctx carries no valid span). It refuses, with an
// *InvalidMessageError, an empty topic, a payload over maxPayload bytes (0
// means DefaultMaxPayload), an ID that is not a UUID, and a header name that
// is empty. Backends call it before writing anything; users do not need it.
func Prepare(ctx context.Context, msgs []Message, maxPayload int) ([]Message, string, error) {
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		switch {
		case strings.TrimSpace(m.Topic) == "":
			return nil, "", &InvalidMessageError{Index: i, Reason: "empty topic"}
		case len(m.Payload) > maxPayload:
			return nil, "", &InvalidMessageError{Index: i, Reason: fmt.Sprintf("payload of %d bytes is over the limit of %d", len(m.Payload), maxPayload)}
		}
		for k := range m.Headers {
			if k == "" {
				return nil, "", &InvalidMessageError{Index: i, Reason: "empty header name"}
			}
		}
		if m.ID == "" {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, "", fmt.Errorf("outbox: new message id: %w", err)
			}
			m.ID = id.String()
		} else if _, err := uuid.Parse(m.ID); err != nil {
			return nil, "", &InvalidMessageError{Index: i, Reason: fmt.Sprintf("id %q is not a UUID", m.ID)}
		}
		out[i] = m
	}
	return out, TraceParent(ctx), nil
}

// TraceParent returns the W3C traceparent of the span in ctx, or "" when ctx
// carries no valid span context.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// contextWithTraceParent returns ctx carrying the remote span context of tp,
// or ctx unchanged when tp is empty or invalid.
func contextWithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}
