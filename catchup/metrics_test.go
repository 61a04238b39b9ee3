package catchup_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/steadfast-go/steadfast"
	"github.com/steadfast-go/steadfast/catchup"
)

// TestMetrics: the poller and the webhook handler report events applied and
// skipped as duplicates, pages, dead letters and the lag, by source.
func TestMetrics(t *testing.T) {
	t.Parallel()
	db, store, idem := sqlite(t)
	l := &list{n: 20, shape: "cursor"}
	srv := httptest.NewServer(l)
	defer srv.Close()
	src, err := catchup.NewHTTPSource(srv.Client(), srv.URL+"/v1/events", catchup.WithPageSize("limit", 8))
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	p, err := catchup.NewPoller("stripe", src, store, idem, func(ctx context.Context, tx steadfast.Tx, ev catchup.Event) error {
		if ev.ID == "evt_0005" {
			return errors.New("poison")
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id, type) VALUES (?, ?)`, ev.ID, ev.Type)
		return err
	}, catchup.WithMeterProvider(mp), catchup.WithMaxAttempts(1), catchup.WithPollInterval(20*time.Millisecond), catchup.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"evt_0001", "evt_0002", "evt_0003"} {
		rec := httptest.NewRecorder()
		p.WebhookHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"id":"`+id+`"}`)))
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for n := 0; n < 19; {
		if time.Now().After(deadline) {
			t.Fatalf("%d events applied", n)
		}
		time.Sleep(10 * time.Millisecond)
		_ = db.QueryRow(`SELECT COUNT(*) FROM effects`).Scan(&n)
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	var lag float64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					if s, _ := dp.Attributes.Value("catchup.source"); s.AsString() != "stripe" {
						t.Errorf("%s without the source attribute: %v", m.Name, dp.Attributes)
					}
					key := m.Name
					if o, ok := dp.Attributes.Value("catchup.outcome"); ok {
						key += "/" + o.AsString()
					}
					sums[key] += dp.Value
				}
			case metricdata.Gauge[float64]:
				for _, dp := range data.DataPoints {
					lag = dp.Value
				}
			}
		}
	}
	if sums["steadfast.catchup.events/applied"] != 19 || sums["steadfast.catchup.events/duplicate"] < 3 || sums["steadfast.catchup.dead_letters"] != 1 || sums["steadfast.catchup.pages"] < 3 {
		t.Errorf("metrics: %v", sums)
	}
	if lag < time.Since(time.Unix(1_700_000_019, 0)).Seconds()-60 {
		t.Errorf("lag %vs", lag)
	}
}
