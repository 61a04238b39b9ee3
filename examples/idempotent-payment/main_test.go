package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/steadfast-go/steadfast/examples/internal/extest"
	"github.com/steadfast-go/steadfast/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmoke runs the example against PostgreSQL: 13 calls for 4 keys charge
// 3 cards, decline 1 and meet 1 outage, whatever the duplicates.
func TestSmoke(t *testing.T) {
	url := testenv.PostgresURL(t)
	table := extest.Name("ex_payment")
	extest.DropTables(t, url, table, table+"_inbox", table+"_order")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	got, err := run(ctx, config{postgres: url, table: table}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	want := summary{Charges: 3, Declines: 1, Outages: 1}
	if got != want {
		t.Errorf("provider saw %+v, want %+v", got, want)
	}
}
