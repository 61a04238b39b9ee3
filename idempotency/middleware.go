package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/steadfast-go/steadfast/internal/httpx"
)

// ReplayedHeader is the header field, set to "true", that marks a replayed
// response.
const ReplayedHeader = "Idempotent-Replayed"

// Middleware returns HTTP middleware that runs a handler once per
// idempotency key (by default the Idempotency-Key header, as the IETF draft
// "The Idempotency-Key HTTP Header Field" describes) and replays its response
// to every retry with the same key. It is safe for concurrent use and fits
// net/http and chi alike: mux.Handle("POST /orders", mw(orders)).
//
// For each request with a non-safe method (GET, HEAD, OPTIONS and TRACE pass
// through untouched) it:
//
//   - reads the body, up to WithMaxBodyBytes (413 beyond), and finds the key
//     (400 if it is missing, unless WithOptionalKey, or malformed, given twice
//     or longer than 255 bytes);
//   - namespaces the key by WithScope (tenant), the method and the route, and
//     fingerprints the request: SHA-256 over method, path, query (unless
//     WithoutQuery) and body;
//   - claims the key in the store: a key claimed with another fingerprint
//     gets 422 and the record is left as it was; a key in progress gets 409
//     with Retry-After, or with WithWait, a bounded wait and the replay; a
//     completed key is replayed: its status, body and stored headers, with
//     Idempotent-Replayed: true, and the handler does not run;
//   - runs the handler with the claim's lease renewed in the background (a
//     MemoryStore's claim is held instead: it lives in this process, and its
//     lease does not run out while the handler runs), and
//     its response buffered; a final response (WithFinalStatus: below 500,
//     except 408, 409 and 429) is stored before the claim ends and then
//     sent; any other response, or a panic, releases the claim (the panic
//     goes on), so that a retry runs the handler again.
//
// A store that fails gets 503, and the handler does not run, unless
// WithFailOpen; a full store's 503 says in Retry-After when room frees up. A
// store that refuses the request's key (ErrTooLarge, ErrInvalid) gets 400.
// With WithTransaction the handler runs in a transaction of the store's
// (TxFrom, which documents the rules). A result that cannot be stored after the handler ran is still
// sent; storing it is retried a few times, then logged as an error. Every
// error response is application/problem+json with a stable type URI (the
// Problem constants).
//
// Middleware returns an error naming the option if an option is invalid or
// does not apply to Middleware, if store is nil, if WithTransaction is given
// and store is not a TxStore, or with WithFailOpen.
func Middleware(store Store, opts ...Option) (func(http.Handler) http.Handler, error) {
	cfg := defaultConfig()
	cfg.keySource = HeaderKey(DefaultKeyHeader)
	cfg.route = defaultRoute
	cfg.storedHeaders = []string{"Content-Type", "Content-Language", "Content-Encoding", "Content-Location", "Location", "Etag", "Last-Modified", "Link", "Cache-Control"}
	cfg.maxBody = 1 << 20
	cfg.maxResponse = 1 << 20
	cfg.final = DefaultFinalStatus
	if err := applyOptions(ctorMiddleware, &cfg, opts); err != nil {
		return nil, err
	}
	m, err := cfg.finish(ctorMiddleware, store, "http")
	if err != nil {
		return nil, err
	}
	mw := &middleware{cfg: cfg, store: store, metrics: m}
	mw.buffers.New = func() any { return new(requestBuffer) }
	if cfg.transaction {
		mw.txStore = store.(TxStore)
	} else {
		mw.mem, _ = store.(*MemoryStore)
	}
	return func(next http.Handler) http.Handler {
		return &handler{mw: mw, next: next}
	}, nil
}

func defaultRoute(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return r.URL.Path
}

// ScopedKey returns the key under which the middleware stores the record of
// a request: key in the namespace of scope (WithScope), method and route
// (WithRoute). Operators use it to look a request's record up, or release
// it, in the store.
//
// Each of scope, method and route is written with its length ("4:acme");
// one longer than 128 bytes (a raw path, with the middleware around a whole
// mux) is written as its SHA-256 instead ("h" and 64 hex digits). With the
// key's at most 255 bytes, a scoped key is therefore at most 651 bytes, and
// fits every store (1024 bytes).
func ScopedKey(scope, method, route, key string) string {
	n := len(key) + 3*(maxScopedPart+4)
	return string(appendScopedKey(make([]byte, 0, n), scope, method, route, key))
}

// maxScopedPart is the longest part of a scoped key kept as it is.
const maxScopedPart = 128

// appendScopedKey appends the ScopedKey of its arguments to b.
func appendScopedKey(b []byte, scope, method, route, key string) []byte {
	for _, part := range [...]string{scope, method, route} {
		if len(part) > maxScopedPart {
			h := sha256.New()
			h.Write([]byte(part))
			var sum [sha256.Size]byte
			h.Sum(sum[:0])
			b = append(b, 'h')
			b = hex.AppendEncode(b, sum[:])
			continue
		}
		b = strconv.AppendInt(b, int64(len(part)), 10)
		b = append(b, ':')
		b = append(b, part...)
	}
	return append(b, key...)
}

type middleware struct {
	cfg     config
	store   Store
	txStore TxStore
	// mem is store, when it is a MemoryStore and not in transactional
	// mode: claims are held (claimKey), and keys looked up without a copy.
	mem      *MemoryStore
	metrics  *metrics
	buffers  sync.Pool // of *requestBuffer
	renewals sync.Pool // of *renewal
}

type handler struct {
	mw   *middleware
	next http.Handler
}

func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if safeMethod(r.Method) {
		h.next.ServeHTTP(w, r)
		return
	}
	rb := h.mw.buffers.Get().(*requestBuffer)
	// One defer, in a function of few returns, is open-coded: serve's
	// many returns would make each of its defers cost a record on the
	// stack and a call to the runtime.
	defer h.mw.done(rb)
	h.serve(w, r, rb)
}

// done ends the transaction context that serve made, if any, and puts rb
// back in the pool.
func (mw *middleware) done(rb *requestBuffer) {
	if rb.cancelTx != nil {
		rb.cancelTx()
		rb.cancelTx = nil
	}
	mw.buffers.Put(rb)
}

// serve is ServeHTTP for a non-safe method, with rb from the pool.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, rb *requestBuffer) {
	mw := h.mw
	cfg := &mw.cfg
	body, err := httpx.ReadBody(r, cfg.maxBody, rb.buf)
	if err != nil {
		p := httpx.BodyProblem(err, cfg.maxBody)
		if p.Status == http.StatusRequestEntityTooLarge {
			// The rest of the body was not read.
			w.Header().Set("Connection", "close")
		}
		httpx.WriteProblem(w, p)
		return
	}
	if cap(body) <= maxPooledBody {
		rb.buf = body[:0]
	}
	if body != nil {
		rb.reader.Reset(body)
		r.Body = &rb.reader
	}
	key, err := cfg.keySource(r, body)
	switch {
	case errors.Is(err, ErrKeyMissing):
		if cfg.optional {
			h.keyless(w, r, rb)
			return
		}
		writeProblem(w, ProblemKeyMissing, "This request needs an idempotency key: "+err.Error())
		return
	case err != nil:
		writeProblem(w, ProblemKeyInvalid, err.Error())
		return
	case len(key) > maxKeyLength:
		writeProblem(w, ProblemKeyInvalid, fmt.Sprintf("The idempotency key is %d bytes long, longer than %d.", len(key), maxKeyLength))
		return
	}
	scope := ""
	if cfg.scope != nil {
		scope = cfg.scope(r)
	}
	// The scoped key, then the fingerprint, in rb's scratch buffer: they
	// become strings (skey and fp, one allocation) only when needed, which
	// a replay from a MemoryStore never does.
	kf, n := mw.keyAndFingerprint(r, scope, cfg.route(r), key, body, rb)
	var skey, fp string
	strs := func() {
		if skey == "" {
			both := string(kf)
			skey, fp = both[:n], both[n:]
		}
	}
	ctx := r.Context()

	var (
		deadline time.Time
		txCtx    context.Context
	)
	if mw.txStore != nil {
		// The transaction outlives a client that went away, so that the
		// answer of a handler that finished is committed; WithMaxTxDuration
		// bounds it instead. ServeHTTP cancels it (done).
		txCtx, rb.cancelTx = txContext(ctx, cfg.maxTx)
	}
	for {
		var (
			c   Claim
			tx  ClaimTx
			err error
		)
		switch {
		case mw.mem != nil:
			var k, f string
			c, k, f, err = mw.mem.claimHeldBytes(ctx, kf[:n], kf[n:], cfg.lease)
			if c.Acquired {
				skey, fp = k, f
			}
		case mw.txStore != nil:
			strs()
			tx, c, err = mw.txStore.BeginTx(txCtx, skey, fp, cfg.lease)
		default:
			strs()
			c, err = mw.store.Claim(ctx, skey, fp, cfg.lease)
		}
		if err != nil {
			h.storeFailed(w, r, err)
			return
		}
		if c.Acquired {
			mw.metrics.add(ctx, mw.metrics.executions)
			if tx != nil {
				h.runTx(w, r, txCtx, skey, tx, rb)
			} else {
				h.run(w, r, skey, c.Token, rb)
			}
			return
		}
		rec := c.Record
		for {
			if rec.Fingerprint != string(kf[n:]) {
				mw.metrics.add(ctx, mw.metrics.mismatches)
				writeProblem(w, ProblemKeyMismatch, "This idempotency key was used with another request (method, path or body differ).")
				return
			}
			if rec.Status == StatusCompleted {
				mw.metrics.add(ctx, mw.metrics.replays)
				mw.replay(w, rec.Response)
				return
			}
			if cfg.wait == 0 {
				mw.inProgress(w, ctx)
				return
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(cfg.wait)
			}
			strs()
			rec, err = waitRecord(ctx, mw.store, skey, fp, deadline)
			if err == nil {
				continue
			}
			if errors.Is(err, errClaimAgain) {
				break
			}
			if errors.Is(err, ErrInProgress) {
				mw.inProgress(w, ctx)
				return
			}
			h.storeFailed(w, r, err)
			return
		}
	}
}

func (mw *middleware) inProgress(w http.ResponseWriter, ctx context.Context) {
	mw.metrics.add(ctx, mw.metrics.conflicts)
	w.Header().Set("Retry-After", "1")
	writeProblem(w, ProblemInProgress, "A request with this idempotency key is being processed; retry later.")
}

// storeFailed answers a request whose claim failed: 503, or the handler
// unprotected if the middleware fails open.
func (h *handler) storeFailed(w http.ResponseWriter, r *http.Request, err error) {
	mw := h.mw
	ctx := r.Context()
	if ctx.Err() != nil && isContextError(err) {
		// The client went away; nobody reads the answer.
		writeProblem(w, ProblemStoreUnavailable, "The request was cancelled.")
		return
	}
	if refused(err) {
		// The client's request, not the store, is at fault: failing open
		// would not help it either.
		writeProblem(w, ProblemKeyInvalid, "The idempotency store cannot hold this request's key: "+err.Error())
		return
	}
	mw.metrics.add(ctx, mw.metrics.storeErrors)
	full := errors.Is(err, ErrStoreFull)
	if !full {
		mw.cfg.logger.Warn("idempotency: store failed", "error", err)
	}
	if mw.cfg.failOpen {
		h.next.ServeHTTP(w, r)
		return
	}
	if full {
		w.Header().Set("Retry-After", retryAfter(err))
		writeProblem(w, ProblemStoreFull, "Too many requests with new idempotency keys are held; retry later.")
		return
	}
	writeProblem(w, ProblemStoreUnavailable, "The idempotency store is unavailable; retry later.")
}

// retryAfter returns the Retry-After of a full store's err: the delay it
// asks for (RetryAfter() time.Duration), in whole seconds rounded up, or 1.
func retryAfter(err error) string {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > time.Second {
			return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
		}
	}
	return "1"
}

// run runs the handler under the claim held with token. The handler's
// response is buffered in rb, which the caller puts back in the pool once
// run returns: the handler must not use its ResponseWriter after it
// returned, as net/http requires.
func (h *handler) run(w http.ResponseWriter, r *http.Request, key string, token int64, rb *requestBuffer) {
	mw := h.mw
	cfg := &mw.cfg
	ctx := r.Context()
	ren := startRenewal(ctx, &mw.renewals, mw.store, key, token, cfg.lease, cfg.logger)
	bw := rb.writer()
	finished := false
	defer func() {
		if finished {
			return
		}
		// The handler panicked: give the claim up, and let the panic go on.
		ren.stop()
		mw.release(ctx, key, token)
	}()
	h.next.ServeHTTP(bw, r)
	finished = true
	ren.stop()
	status := bw.statusCode()
	if !cfg.final(status) {
		mw.release(ctx, key, token)
		bw.sendTo(w)
		return
	}
	stored, head := newResponse(rb.head, status, bw.header, cfg.storedHeaders, bw.body.Bytes(), cfg.maxResponse)
	if cap(head) <= maxPooledBody {
		rb.head = head
	}
	sctx, cancel := afterWork(ctx, mw.store, cfg.storeTimeout)
	defer cancel()
	var err error
	if mw.mem != nil {
		// stored is the store's once it is kept: it is not copied.
		err = mw.mem.completeOwned(sctx, key, token, stored, cfg.retention)
	} else {
		err = mw.store.Complete(sctx, key, token, stored, cfg.retention)
	}
	if errors.Is(err, ErrTooLarge) {
		// The store keeps less than WithMaxResponseBytes: keep the marker
		// that tells retries so.
		err = mw.store.Complete(sctx, key, token, tooLargeMarker(status), cfg.retention)
	}
	if err == nil {
		bw.sendTo(w)
		return
	}
	// The work is done: answer, then try to store the result again.
	bw.sendTo(w)
	_ = http.NewResponseController(w).Flush()
	if !errors.Is(err, ErrLeaseLost) {
		err = complete(sctx, mw.store, key, token, stored, cfg.retention)
	}
	if err != nil {
		unhold(mw.store, key, token)
		mw.metrics.add(ctx, mw.metrics.storeErrors)
		cfg.logger.Error("idempotency: the handler ran but its response was not stored; a retry may run it again",
			"key", key, "error", err)
	}
}

// keyless serves a request without a key (WithOptionalKey): unprotected,
// and in transactional mode in a transaction without a claim.
func (h *handler) keyless(w http.ResponseWriter, r *http.Request, rb *requestBuffer) {
	mw := h.mw
	if mw.txStore == nil {
		h.next.ServeHTTP(w, r)
		return
	}
	txCtx, cancel := txContext(r.Context(), mw.cfg.maxTx)
	defer cancel()
	tx, _, err := mw.txStore.BeginTx(txCtx, "", "", mw.cfg.lease)
	if err != nil {
		h.storeFailed(w, r, err)
		return
	}
	h.runTx(w, r, txCtx, "", tx, rb)
}

// runTx runs the handler in tx, begun on txCtx, which holds the claim of
// key (none for a keyless request), and commits its final answer with its
// writes, or rolls everything back, on txCtx: detached from the client and
// bounded by WithMaxTxDuration. The response is buffered in rb, as in run.
func (h *handler) runTx(w http.ResponseWriter, r *http.Request, txCtx context.Context, key string, tx ClaimTx, rb *requestBuffer) {
	mw := h.mw
	cfg := &mw.cfg
	ctx := r.Context()
	r = r.WithContext(withTx(ctx, tx))
	bw := rb.writer()
	finished := false
	defer func() {
		if !finished {
			// The handler panicked: roll back, and let the panic go on.
			mw.rollback(txCtx, key, tx)
		}
	}()
	h.next.ServeHTTP(bw, r)
	finished = true
	status := bw.statusCode()
	if !cfg.final(status) {
		mw.rollback(txCtx, key, tx)
		bw.sendTo(w)
		return
	}
	var stored []byte
	if key != "" {
		stored = appendResponse(nil, status, bw.header, cfg.storedHeaders, bw.body.Bytes(), cfg.maxResponse)
	}
	// A refusal (400 and above) leaves no half-done writes: they are
	// rolled back to the savepoint taken after the claim.
	discard := status >= 400
	err := tx.Commit(txCtx, stored, cfg.retention, discard)
	if errors.Is(err, ErrTooLarge) {
		// Refused before anything else: the transaction is as it was.
		err = tx.Commit(txCtx, tooLargeMarker(status), cfg.retention, discard)
	}
	if err != nil {
		// Everything the handler wrote in tx is gone: its response would
		// lie.
		mw.metrics.add(ctx, mw.metrics.storeErrors)
		mw.cfg.logger.Warn("idempotency: committing the transaction failed", "key", key, "error", err)
		writeProblem(w, ProblemStoreUnavailable, "The request's transaction could not be committed; retry.")
		return
	}
	bw.sendTo(w)
}

// release gives the claim up after a response that is not final, or a
// panic.
func (mw *middleware) release(ctx context.Context, key string, token int64) {
	sctx, cancel := afterWork(ctx, mw.store, mw.cfg.storeTimeout)
	defer cancel()
	err := mw.store.Release(sctx, key, token)
	mw.undone(ctx, key, err)
}

// rollback rolls tx back, the claim of key with it, after a response that
// is not final, or a panic; txCtx is the transaction's own context.
func (mw *middleware) rollback(txCtx context.Context, key string, tx ClaimTx) {
	mw.undone(txCtx, key, tx.Rollback(txCtx))
}

// undone reports a failure to give a claim up.
func (mw *middleware) undone(ctx context.Context, key string, err error) {
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		mw.metrics.add(ctx, mw.metrics.storeErrors)
		mw.cfg.logger.Warn("idempotency: releasing a claim failed; the key stays held until its lease ends",
			"key", key, "error", err)
	}
}

func (mw *middleware) replay(w http.ResponseWriter, stored []byte) {
	hdr := w.Header()
	resp, err := decodeResponse(stored, mw.cfg.storedHeaders, hdr, 1)
	if err != nil {
		mw.metrics.add(context.Background(), mw.metrics.storeErrors)
		mw.cfg.logger.Error("idempotency: a stored response is corrupt", "error", err)
		writeProblem(w, ProblemStoreUnavailable, "The stored response of this idempotency key cannot be read.")
		return
	}
	if resp.tooLarge {
		writeProblem(w, ProblemResponseNotStored, fmt.Sprintf(
			"A request with this idempotency key was processed (status %d), but its response was too large to keep and cannot be replayed.", resp.status))
		return
	}
	replayed := resp.spare[0:1:1]
	replayed[0] = "true"
	hdr[ReplayedHeader] = replayed
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// keyAndFingerprint returns the ScopedKey of a request followed by its
// fingerprint, the hex SHA-256 of the method, path (with the query, unless
// WithoutQuery) and body (see fingerprintSum), in rb's scratch buffer, and
// the length of the key. A store that keeps a new record keeps both, from
// one allocation; a replay from a MemoryStore allocates none.
func (mw *middleware) keyAndFingerprint(r *http.Request, scope, route, key string, body []byte, rb *requestBuffer) (kf []byte, n int) {
	if mw.cfg.canonicalJSON {
		body = canonicalJSON(body)
	}
	path := r.URL.EscapedPath()
	query := r.URL.RawQuery
	if mw.cfg.ignoreQuery {
		query = ""
	}
	var sum [sha256.Size]byte
	if len(body) > maxPooledBody {
		sum = fingerprintSum(r.Method, path, query, body)
	} else {
		// Small requests: one contiguous input, hashed without a digest
		// object.
		in := append(rb.scratch[:0], r.Method...)
		in = append(in, 0)
		in = append(in, path...)
		if query != "" {
			in = append(in, '?')
			in = append(in, query...)
		}
		in = append(in, 0)
		in = append(in, body...)
		sum = sha256.Sum256(in)
		if cap(in) <= 2*maxPooledBody {
			rb.scratch = in[:0]
		}
	}
	b := appendScopedKey(rb.scratch[:0], scope, r.Method, route, key)
	n = len(b)
	b = hex.AppendEncode(b, sum[:])
	if cap(b) <= 2*maxPooledBody {
		rb.scratch = b[:0]
	}
	return b, n
}

// canonicalJSON returns the canonical form of a JSON body, or body itself if
// it is not JSON.
func canonicalJSON(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body
	}
	if _, err := dec.Token(); err != io.EOF {
		return body
	}
	out, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return out
}

// requestBuffer holds a request's body while the middleware handles it;
// the middleware pools them. The handler must not use the request's body
// after it returned (as net/http requires), nor may a KeySource keep it.
type requestBuffer struct {
	buf     []byte
	scratch []byte // the fingerprint's input, then the key and fingerprint
	reader  httpx.BodyReader
	w       bufferedWriter
	head    []byte // the stored form of a response's head (newResponse)
	// cancelTx ends the transaction context of transactional mode.
	cancelTx context.CancelFunc
}

// writer returns rb's bufferedWriter, emptied.
func (rb *requestBuffer) writer() *bufferedWriter {
	w := &rb.w
	if w.header == nil {
		w.header = make(http.Header)
	}
	clear(w.header)
	w.status, w.wroteHeader = 0, false
	if w.body.Cap() > maxPooledBody {
		w.body = bytes.Buffer{}
	}
	w.body.Reset()
	return w
}

// maxPooledBody is the largest body buffer put back in the pool.
const maxPooledBody = 64 << 10

// bufferedWriter holds the handler's response until the middleware has
// stored it. It does not support Flush or Hijack: a streamed response cannot
// be replayed.
type bufferedWriter struct {
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.wroteHeader || code < 200 {
		// Informational responses (103 Early Hints) are not buffered.
		return
	}
	b.wroteHeader = true
	b.status = code
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if !b.wroteHeader {
		b.WriteHeader(http.StatusOK)
	}
	return b.body.Write(p)
}

// noTransferEncoding reports whether h.Get("Transfer-Encoding") is "",
// without canonicalizing the name again.
func noTransferEncoding(h http.Header) bool {
	te := h["Transfer-Encoding"]
	return len(te) == 0 || te[0] == ""
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func (b *bufferedWriter) statusCode() int {
	if !b.wroteHeader {
		return http.StatusOK
	}
	return b.status
}

func (b *bufferedWriter) sendTo(w http.ResponseWriter) {
	dst := w.Header()
	for k, v := range b.header {
		dst[k] = v
	}
	status := b.statusCode()
	if _, ok := dst["Content-Length"]; !ok && bodyAllowed(status) && noTransferEncoding(dst) {
		// The whole body is known: say so, so that the client has the
		// complete response even while the middleware still works after it.
		dst["Content-Length"] = []string{strconv.Itoa(b.body.Len())}
	}
	w.WriteHeader(status)
	_, _ = w.Write(b.body.Bytes())
}
