package kafkapub

import (
	"context"
	"database/sql"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/steadfast-go/steadfast/outbox"
)

// ErrNoMessageID is returned by Consume for a record without an IDHeader
// header: it was not produced by this package and cannot be deduplicated.
var ErrNoMessageID = errors.New("kafkapub: record has no " + IDHeader + " header")

// messageID returns the outbox message id of rec (its IDHeader header), or
// "" when it has none.
func messageID(rec *kgo.Record) string {
	for _, h := range rec.Headers {
		if h.Key == IDHeader {
			return string(h.Value)
		}
	}
	return ""
}

// Consume processes rec at most once for consumer: it runs fn inside the
// inbox's transaction, keyed by the record's message id, and reports
// duplicate true, without running fn, for a record already processed (a
// copy produced again by the relay, or a record fetched again after a
// restart before its offset was committed).
//
// Kafka has no per-record acknowledgement: commit the record's offset only
// after Consume returned nil (for instance with kgo.DisableAutoCommit and
// CommitRecords, or kgo.AutoCommitMarks and MarkCommitRecords). If fn or the
// inbox fails, the transaction rolls back and the error is returned: do not
// commit past the record, process it again. A record without IDHeader gets
// ErrNoMessageID; a nil inbox, record or fn an error. fn's effects must stay
// inside tx. Consume is safe for concurrent use.
func Consume(ctx context.Context, inbox outbox.Inbox, consumer string, rec *kgo.Record, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error) {
	if rec == nil || inbox == nil || fn == nil {
		return false, errors.New("kafkapub: Consume: the inbox, the record and fn are required")
	}
	id := messageID(rec)
	if id == "" {
		return false, ErrNoMessageID
	}
	return inbox.Process(ctx, consumer, id, fn)
}

// Position returns the outbox position of rec (its outbox.PositionHeader
// header, set by the relay), for an ordering guard such as
// sqlstore.ApplyVersion keyed by the record key. ok is false when rec has no
// valid position.
func Position(rec *kgo.Record) (pos int64, ok bool) {
	if rec == nil {
		return 0, false
	}
	for _, h := range rec.Headers {
		if h.Key == outbox.PositionHeader {
			pos, err := strconv.ParseInt(string(h.Value), 10, 64)
			return pos, err == nil
		}
	}
	return 0, false
}
