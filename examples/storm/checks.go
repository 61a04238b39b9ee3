package main

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// checks reads the outcome back from the database and the parties.
func (s *storm) checks(ctx context.Context) ([]check, error) {
	effects := map[string]int{}
	var applied, stale, byPoller int64
	rows, err := s.db.QueryContext(ctx, `SELECT event_id, kind, via FROM storm_effects`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, kind, via string
		if err := rows.Scan(&id, &kind, &via); err != nil {
			rows.Close()
			return nil, err
		}
		effects[id]++
		if kind == "applied" {
			applied++
		} else {
			stale++
		}
		if via == "poller" {
			byPoller++
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	s.c.applied.Store(applied)
	s.c.stale.Store(stale)
	s.c.byPoller.Store(byPoller)
	// steadfast.catchup.events counts the duplicates of both paths; the webhook
	// route's are counted apart.
	if dups, err := s.catchupDuplicates(ctx); err == nil {
		s.c.pollerDups.Store(max(0, dups-s.c.inboxDuplicates.Load()))
	} else {
		return nil, err
	}

	var twice, lostEvents int
	for _, ev := range s.plan.events {
		switch n := effects[ev.ID]; {
		case n == 0:
			lostEvents++
		case n > 1:
			twice++
		}
	}

	var notLatest, created int
	versions := map[string]int64{}
	rows, err = s.db.QueryContext(ctx, `SELECT id, version, origin FROM storm_orders`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, origin string
		var v int64
		if err := rows.Scan(&id, &v, &origin); err != nil {
			rows.Close()
			return nil, err
		}
		versions[id] = v
		if origin == "service" {
			created++
		}
	}
	rows.Close()
	for _, id := range s.plan.orders {
		if versions[id] != int64(len(statuses)) {
			notLatest++
		}
	}

	p := s.provider
	p.mu.Lock()
	var badCharges int
	for _, id := range s.plan.orders {
		if p.charges[id] != 1 {
			badCharges++
		}
	}
	p.mu.Unlock()

	// Every applied event and every created order committed one message
	// for the partner.
	expected := applied + int64(created)
	lostMessages := max(0, expected-s.c.partnerReceived.Load())
	violations := s.partner.report()

	return []check{
		{"side effects per unique event = 1", fmt.Sprintf("%d twice+", twice), twice == 0},
		{"webhook events lost = 0", fmt.Sprintf("%d of %d", lostEvents, len(s.plan.events)), lostEvents == 0},
		{"orders at their latest state (no stale overwrite)", fmt.Sprintf("%d wrong", notLatest), notLatest == 0},
		{"charges per order = 1", fmt.Sprintf("%d wrong", badCharges), badCharges == 0},
		{"committed messages lost before the partner = 0", fmt.Sprintf("%d of %d", lostMessages, expected), lostMessages == 0},
		{"per-key order violations at the partner = 0", fmt.Sprint(violations), violations == 0},
	}, nil
}

// catchupDuplicates reads the steadfast.catchup.events metric: the events the poller
// and the webhook route found already applied (outcome "duplicate").
func (s *storm) catchupDuplicates(ctx context.Context) (int64, error) {
	var rm metricdata.ResourceMetrics
	if err := s.metrics.Collect(ctx, &rm); err != nil {
		return 0, err
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "steadfast.catchup.events" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, _ := dp.Attributes.Value(attribute.Key("catchup.outcome")); v.AsString() == "duplicate" {
					n += dp.Value
				}
			}
		}
	}
	return n, nil
}
