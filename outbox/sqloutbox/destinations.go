package sqloutbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/outbox"
)

// The backlog per topic and destination, in one statement on the
// database's clock. In flight: pending, claimed (a claim token) and its
// lease (leased_until) not expired; every outcome but Extend clears both.

const pgStatsByDestination = `
SELECT topic, destination,
	count(*) FILTER (WHERE state = 0),
	count(*) FILTER (WHERE state = 0 AND leased_until > now()),
	count(*) FILTER (WHERE state = 2),
	COALESCE((extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 0)) * 1000000)::bigint, 0)
FROM {t} WHERE state IN (0, 2)
GROUP BY topic, destination ORDER BY topic, destination`

// genericStatsByDestination: {now} is the dialect's clock in microseconds.
const genericStatsByDestination = `
SELECT topic, destination,
	COALESCE(SUM(CASE WHEN state = 0 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN state = 0 AND claim_token IS NOT NULL AND leased_until > {now} THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END), 0),
	COALESCE({now} - MIN(CASE WHEN state = 0 THEN created_at END), 0)
FROM {t} WHERE state IN (0, 2)
GROUP BY topic, destination ORDER BY topic, destination`

const pgListDeadByDestination = `SELECT ` + pgCols + ` FROM {t}
WHERE state = 2 AND seq > $1 AND destination = $2 AND ($3 = '' OR topic = $3) ORDER BY seq LIMIT $4`

const genericListDeadByDestination = `SELECT ` + plainCols + ` FROM {t}
WHERE state = 2 AND seq > ? AND destination = ? AND (? = '' OR topic = ?) ORDER BY seq LIMIT ?`

// StatsByDestination returns the backlog of each topic and destination that
// has pending messages or dead letters, ordered by topic then destination:
// Pending (claimed or not), InFlight (claimed by a relay whose lease has not
// expired), Dead, and OldestPendingAge (0 when none is pending). All figures
// come from one statement on the database's clock, so they agree with each
// other and are the same for every replica. A message enqueued without a
// Destination is counted under its Topic (see outbox.Message.Destination).
// It reads every pending and dead row: meant for operators and dashboards,
// not for a hot path.
func (s *Store) StatsByDestination(ctx context.Context) ([]outbox.Stats, error) {
	q := genericStatsByDestination
	if s.dialect == steadfast.Postgres {
		q = pgStatsByDestination
	}
	rows, err := s.db.QueryContext(ctx, s.expand(q))
	if err != nil {
		return nil, fmt.Errorf("sqloutbox: stats by destination: %w", err)
	}
	defer rows.Close()
	var out []outbox.Stats
	for rows.Next() {
		var st outbox.Stats
		var age int64
		if err := rows.Scan(&st.Topic, &st.Destination, &st.Pending, &st.InFlight, &st.Dead, &age); err != nil {
			return nil, fmt.Errorf("sqloutbox: stats by destination: %w", err)
		}
		st.OldestPendingAge = max(0, time.Duration(age)*time.Microsecond)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqloutbox: stats by destination: %w", err)
	}
	return out, nil
}

// ListDeadByDestination is ListDead for the dead letters of one
// destination: those after position after, of topic too unless topic is
// empty, in position order, at most limit (100 when limit <= 0). An empty
// destination lists every destination's, as ListDead does. It is a method
// of its own because ListDead's signature is outbox.Store's, shared by every
// store and by the relay.
func (s *Store) ListDeadByDestination(ctx context.Context, destination, topic string, after int64, limit int) ([]outbox.Record, error) {
	if destination == "" {
		return s.ListDead(ctx, topic, after, limit)
	}
	if limit <= 0 {
		limit = 100
	}
	var rows *sql.Rows
	var err error
	if s.dialect == steadfast.Postgres {
		rows, err = s.db.QueryContext(ctx, s.expand(pgListDeadByDestination), after, destination, topic, limit)
	} else {
		rows, err = s.db.QueryContext(ctx, s.expand(genericListDeadByDestination), after, destination, topic, topic, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("sqloutbox: list dead letters of %s: %w", destination, err)
	}
	defer rows.Close()
	var out []outbox.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("sqloutbox: list dead letters of %s: %w", destination, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqloutbox: list dead letters of %s: %w", destination, err)
	}
	return out, nil
}
