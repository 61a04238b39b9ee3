package catchup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/internal/httpx"
)

// WebhookHandler returns the handler of the webhook route of the poller's
// source: it reads the body as one event (its id by WithEventID, its type
// and creation time from the top-level "type" and "created" members when
// present), marks the id in the poller's inbox under the poller's consumer
// name and, the first time, applies the event with the poller's
// HandlerFunc, all in one transaction. An event already applied, by a
// webhook or by the poller, is answered 200 with no effect, so the provider
// stops redelivering it.
//
// Behind idempotency.Middleware in transactional mode, it works in the
// request's transaction (the middleware commits); otherwise it begins and
// commits one of its own in the poller's store. Put signature verification
// (package webhook) in front of it.
//
// It answers 200 once the event is applied or found applied; 400 for a body
// that is not an event and for an event refused for good, as the poller
// refuses it (see DeadLetter.Refused: no id, an id or type out of bounds,
// an id the inbox refuses); 413 for a body over 1 MiB; 500 when the handler
// fails (the provider will redeliver) and 503 when the database fails.
// Error answers are problem details (RFC 9457). It works whether or not the
// poller is started: replicas that do not hold the lease serve webhooks
// too.
func (p *Poller) WebhookHandler() http.Handler {
	if p == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			problem(w, http.StatusInternalServerError, "catchup: nil *Poller")
		})
	}
	return http.HandlerFunc(p.serveWebhook)
}

func (p *Poller) serveWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEventSize+1))
	if err != nil {
		problem(w, http.StatusBadRequest, "the body could not be read")
		return
	}
	if len(body) > maxEventSize {
		problem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxEventSize))
		return
	}
	ev, err := decodeEvent(body, p.eventID)
	if err == nil {
		err = checkEvent(&ev)
	}
	if err != nil {
		problem(w, http.StatusBadRequest, reason(err))
		return
	}
	var first bool
	apply := func(ctx context.Context, tx steadfast.Tx) error {
		var err error
		if first, err = p.inbox.MarkProcessed(ctx, tx, p.cfg.consumer, ev.ID); err != nil {
			if refusedByInbox(err) {
				return &refusal{err}
			}
			return err
		}
		if !first {
			return nil
		}
		if err := p.fn(ctx, tx, ev); err != nil {
			return &handlerError{err}
		}
		return nil
	}
	ctx := r.Context()
	if tx := requestTx(ctx); tx != nil {
		err = apply(ctx, tx)
	} else {
		err = p.retryTx(ctx, apply)
	}
	var (
		he *handlerError
		rf *refusal
	)
	switch {
	case errors.As(err, &rf):
		problem(w, http.StatusBadRequest, reason(rf.err))
		return
	case errors.As(err, &he):
		p.log.Warn("catchup: webhook event not applied", "event", ev.ID, "type", ev.Type, "err", he.err)
		problem(w, http.StatusInternalServerError, "the event could not be applied")
		return
	case err != nil:
		p.log.Warn("catchup: webhook event not applied: store error", "event", ev.ID, "err", err)
		problem(w, http.StatusServiceUnavailable, "the event could not be recorded")
		return
	}
	if first {
		p.m.counted(ctx, 1, 0)
	} else {
		p.m.counted(ctx, 0, 1)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, `{"id":%s,"applied":%t}`, strconv.Quote(ev.ID), first)
}

func problem(w http.ResponseWriter, status int, detail string) {
	httpx.WriteProblem(w, httpx.Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

func (p *Poller) eventID(payload []byte) (string, error) {
	if p.cfg.eventID != nil {
		return p.cfg.eventID(payload)
	}
	return jsonID(payload)
}

// jsonID returns the top-level "id" member of a JSON object, a string or a
// number.
func jsonID(payload []byte) (string, error) {
	var v struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	return idString(v.ID)
}

func idString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", errors.New(`no "id" member`)
	case raw[0] == '"':
		s, err := jsonString(raw)
		if err != nil {
			return "", err
		}
		if s == "" {
			return "", errors.New(`empty "id"`)
		}
		return s, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", err
		}
		return n.String(), nil
	}
	return "", fmt.Errorf(`"id" is neither a string nor a number: %.40s`, raw)
}

// jsonString reads a JSON string, without the decoder when it has no
// escapes.
func jsonString(raw json.RawMessage) (string, error) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' && bytes.IndexByte(raw[1:n-1], '\\') < 0 && bytes.IndexByte(raw[1:n-1], '"') < 0 && utf8.Valid(raw[1:n-1]) {
		for _, c := range raw[1 : n-1] {
			if c < 0x20 {
				return "", errors.New("control character in a JSON string")
			}
		}
		return string(raw[1 : n-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// decodeEvent reads a webhook body as an event.
func decodeEvent(body []byte, id func([]byte) (string, error)) (Event, error) {
	var v struct {
		Type    json.RawMessage `json:"type"`
		Created json.RawMessage `json:"created"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return Event{}, fmt.Errorf("the body is not a JSON object: %v", err)
	}
	ev := Event{Payload: body}
	var err error
	if ev.ID, err = id(body); err != nil || ev.ID == "" {
		if err == nil {
			err = errors.New("empty id")
		}
		return Event{}, fmt.Errorf("the event's id: %v", err)
	}
	ev.Type, _ = jsonString(v.Type)
	ev.Created = parseTime(v.Created)
	return ev, nil
}

// parseTime reads a creation time: Unix seconds (a number, possibly with a
// fraction) or an RFC 3339 string. It returns zero for anything else.
func parseTime(raw json.RawMessage) time.Time {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return time.Time{}
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}
		}
		return t
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f <= 0 {
		return time.Time{}
	}
	if f > 1e11 { // milliseconds
		f /= 1000
	}
	if f > math.MaxInt64/1e9 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}
