package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/steadfast-go/steadfast/idempotency"
)

func ExampleMiddleware() {
	store, err := idempotency.NewMemoryStore()
	if err != nil {
		log.Fatal(err)
	}
	idem, err := idempotency.Middleware(store,
		idempotency.WithScope(func(r *http.Request) string { return r.Header.Get("X-Account") }))
	if err != nil {
		log.Fatal(err)
	}
	orders := 0
	mux := http.NewServeMux()
	mux.Handle("POST /orders", idem(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order":%d}`, orders)
	})))

	for range 2 {
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(`{"sku":"A1"}`))
		r.Header.Set("X-Account", "acme")
		r.Header.Set("Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Printf("%d %s replayed=%q\n", w.Code, w.Body, w.Header().Get("Idempotent-Replayed"))
	}
	fmt.Println("orders created:", orders)
	// Output:
	// 201 {"order":1} replayed=""
	// 201 {"order":1} replayed="true"
	// orders created: 1
}

func ExampleDo() {
	store, err := idempotency.NewMemoryStore()
	if err != nil {
		log.Fatal(err)
	}
	runner, err := idempotency.NewRunner(store)
	if err != nil {
		log.Fatal(err)
	}
	type Receipt struct{ ID string }
	charges := 0
	charge := func(ctx context.Context) (Receipt, error) {
		charges++
		return Receipt{ID: fmt.Sprintf("ch_%d", charges)}, nil
	}
	ctx := context.Background()
	for range 3 {
		receipt, err := idempotency.Do(ctx, runner, "order-42/charge", charge,
			idempotency.WithFingerprint([]byte(`{"amount":1000}`)))
		fmt.Println(receipt.ID, err)
	}
	_, err = idempotency.Do(ctx, runner, "order-42/charge", charge,
		idempotency.WithFingerprint([]byte(`{"amount":2000}`)))
	fmt.Println(errors.Is(err, idempotency.ErrFingerprintMismatch))
	// Output:
	// ch_1 <nil>
	// ch_1 <nil>
	// ch_1 <nil>
	// true
}

func ExampleFinal() {
	store, _ := idempotency.NewMemoryStore()
	runner, _ := idempotency.NewRunner(store)
	declined := errors.New("card declined")
	charge := func(ctx context.Context) (string, error) {
		// Retrying would not help: store the outcome.
		return "", idempotency.Final(declined)
	}
	ctx := context.Background()
	_, err := idempotency.Do(ctx, runner, "order-7/charge", charge)
	fmt.Println(err, errors.Is(err, declined))
	_, err = idempotency.Do(ctx, runner, "order-7/charge", charge)
	var final *idempotency.FinalError
	fmt.Println(err, errors.As(err, &final) && final.Replayed)
	// Output:
	// card declined true
	// card declined true
}

func ExampleNewMemoryStore() {
	store, err := idempotency.NewMemoryStore(idempotency.WithMaxRecords(2))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, key := range []string{"a", "b", "c"} {
		c, err := store.Claim(ctx, key, "", time.Minute)
		fmt.Println(key, c.Acquired, errors.Is(err, idempotency.ErrStoreFull))
	}
	// Output:
	// a true false
	// b true false
	// c false true
}

func ExampleHeaderKey() {
	src := idempotency.HeaderKey(idempotency.DefaultKeyHeader)
	for _, v := range []string{`8e03978e-40d5-43e8-bc93-6894a57f9324`, `"order 42"`, `"unterminated`} {
		r := httptest.NewRequest("POST", "/orders", nil)
		r.Header.Set("Idempotency-Key", v)
		key, err := src(r, nil)
		fmt.Printf("%q %v\n", key, errors.Is(err, idempotency.ErrInvalid))
	}
	// Output:
	// "8e03978e-40d5-43e8-bc93-6894a57f9324" false
	// "order 42" false
	// "" true
}

func ExampleJSONFieldKey() {
	// A Stripe-style webhook receiver: the event id is the key.
	byEventID, err := idempotency.JSONFieldKey("id")
	if err != nil {
		log.Fatal(err)
	}
	store, _ := idempotency.NewMemoryStore()
	idem, err := idempotency.Middleware(store, idempotency.WithKeySource(byEventID))
	if err != nil {
		log.Fatal(err)
	}
	handled := 0
	hooks := idem(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handled++ }))
	for range 2 {
		r := httptest.NewRequest("POST", "/webhooks/stripe", strings.NewReader(`{"id":"evt_1","type":"charge.succeeded"}`))
		hooks.ServeHTTP(httptest.NewRecorder(), r)
	}
	fmt.Println("handled:", handled)
	// Output:
	// handled: 1
}
