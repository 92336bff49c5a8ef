// Package api is codebench's HTTP API: the routes of Judge0 CE 1.13.1 that
// its clients use, over the same RabbitMQ jobs queue the workers serve.
// Submissions and their results are kept in a store (internal/store);
// statuses come back on a durable reply queue the workers allow, and are
// written to the store before they are acknowledged.
package api

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/piston"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/store"
)

// Config is the API's settings.
type Config struct {
	// AuthTokens, when any, are required of every request in the
	// AuthHeader header or query parameter (401 without); AuthzTokens are
	// required in AuthzHeader for the list and /authorize (403).
	AuthTokens, AuthzTokens []string
	AuthHeader, AuthzHeader string
	// MaxQueue bounds the submissions in flight (503 beyond).
	MaxQueue int
	// CORSOrigins are the origins allowed; empty or "*": any, as Judge0.
	CORSOrigins []string
	// ReplyQueue is the durable queue statuses come back on.
	ReplyQueue string
	// MaxBody bounds a request body (413 beyond).
	MaxBody int64
	Limits  judge0.Limits
	// CallbackAllow are the hosts ("host" or "host:port") a callback_url
	// may name; none: callbacks are refused (422). CallbackTries (3) and
	// CallbackTimeout (5 s) are Judge0's callbacks_max_tries and
	// callbacks_timeout.
	CallbackAllow   []string
	CallbackTries   int
	CallbackTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout (the whole request) and IdleTimeout
	// bound a slow or silent client; WriteTimeout bounds the answer,
	// wait=true's included (defaults: 10 s, 1 min, 2 min, 15 min).
	ReadHeaderTimeout, ReadTimeout, IdleTimeout, WriteTimeout time.Duration
	// EnableDelete allows DELETE /submissions/{token} (Judge0's
	// enable_submission_delete).
	EnableDelete bool
	// WorkerUser is the broker user the workers publish statuses as: a
	// status from anyone else is dropped ("" takes any: tests only).
	WorkerUser string
}

// Publisher publishes a job whose statuses go to replyTo.
type Publisher interface {
	PublishJobReply(ctx context.Context, body []byte, replyTo, correlationID string) error
}

// Server serves the API.
type Server struct {
	cfg      Config
	store    *store.Store
	pub      Publisher
	log      *slog.Logger
	now      func() time.Time
	langs    map[int]judge0.Language
	list     []judge0.Language // sorted by name
	runtimes []piston.Runtime

	metrics *metrics
	// Ready says whether the API can take submissions (the broker is
	// connected); nil: always.
	Ready func() error
	// Queue, when set, inspects the jobs queue (GET /workers).
	Queue QueueInspector
	// OnFinal, when set, sees each final status once it is stored (set
	// before serving).
	OnFinal func(*job.Status)

	callbacks chan *judge0.Record
	live      map[string]*liveOutput // by token, under mu
	queueMu   sync.Mutex             // held while looking at the jobs queue
	queueSeen queueLook              // the last look, under queueMu

	mu       sync.Mutex
	inflight int
	waiters  map[string][]chan *judge0.Record
}

// New makes a server; langs are the Judge0 languages the image has.
func New(cfg Config, st *store.Store, pub Publisher, langs []judge0.Language, log *slog.Logger) (*Server, error) {
	if cfg.AuthHeader == "" {
		cfg.AuthHeader = "X-Auth-Token"
	}
	if cfg.AuthzHeader == "" {
		cfg.AuthzHeader = "X-Auth-User"
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 8 << 20
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 10000
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.ReadHeaderTimeout, 10 * time.Second}, {&cfg.ReadTimeout, time.Minute}, {&cfg.IdleTimeout, 2 * time.Minute}, {&cfg.WriteTimeout, 15 * time.Minute}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.CallbackTries <= 0 {
		cfg.CallbackTries = 3
	}
	if cfg.CallbackTimeout <= 0 {
		cfg.CallbackTimeout = 5 * time.Second
	}
	cfg.Limits.EnableCallbacks = len(cfg.CallbackAllow) > 0
	s := &Server{cfg: cfg, store: st, pub: pub, log: log, now: time.Now, list: langs,
		langs: map[int]judge0.Language{}, waiters: map[string][]chan *judge0.Record{},
		callbacks: make(chan *judge0.Record, callbackQueue), live: map[string]*liveOutput{}}
	for _, l := range langs {
		s.langs[l.ID] = l
	}
	s.runtimes = piston.Runtimes(langs)
	s.metrics = newMetrics(s)
	return s, nil
}

// Recover publishes again every submission the store has that is not
// finished (a crash between storing and publishing, or statuses lost with
// a broker): a job run twice is harmless, a token never answered is not.
// It counts them as in flight.
func (s *Server) Recover(ctx context.Context) (int, error) {
	pending, err := s.store.Pending(ctx, s.cfg.MaxQueue)
	if err != nil {
		return 0, err
	}
	for _, r := range pending {
		if err := s.publish(ctx, r); err != nil {
			return 0, err
		}
	}
	s.mu.Lock()
	s.inflight = len(pending)
	s.mu.Unlock()
	return len(pending), nil
}

func (s *Server) publish(ctx context.Context, r *judge0.Record) error {
	l, ok := s.langs[r.Sub.LanguageID]
	if !ok {
		return fmt.Errorf("api: %s: no language %d", r.Token, r.Sub.LanguageID)
	}
	body, err := json.Marshal(r.Sub.Job(r.Token, l))
	if err != nil {
		return err
	}
	return s.pub.PublishJobReply(ctx, body, s.cfg.ReplyQueue, r.Token)
}

// HandleStatus takes one status from the reply queue: it is written to the
// store before it returns nil (then the caller acknowledges it). A status
// of a token the store does not have, or not published by the workers'
// user with codebench's app_id (a producer may name this queue as its
// reply_to and forge a verdict for a token it learnt), is dropped (nil).
func (s *Server) HandleStatus(ctx context.Context, m queue.Message) error {
	var st job.Status
	if err := json.Unmarshal(m.Body, &st); err != nil || st.ID == "" {
		s.log.Warn("api: a reply that is no status, dropped", "err", err)
		s.metrics.statuses.WithLabelValues("not a status").Inc()
		return nil
	}
	if s.cfg.WorkerUser != "" {
		if err := m.FromWorker(s.cfg.WorkerUser, st.ID, st.ID); err != nil {
			s.log.Warn("api: a status not from the workers, dropped", "token", st.ID, "err", err)
			s.metrics.statuses.WithLabelValues("not the workers'").Inc()
			return nil
		}
	}
	if st.Status == job.StatusOutput {
		s.addLive(&st) // the playground's; the final status has it all
		return nil
	}
	r, err := s.store.Get(ctx, st.ID)
	if errors.Is(err, store.ErrNotFound) {
		s.metrics.statuses.WithLabelValues("unknown token").Inc()
		return nil
	}
	if err != nil {
		return err
	}
	r.Apply(&st, s.now())
	t0 := time.Now()
	changed, err := s.store.Update(ctx, r)
	s.metrics.step("update", t0)
	if err != nil {
		return err
	}
	s.metrics.statuses.WithLabelValues("stored").Inc()
	if changed && r.FinishedAt != nil {
		if s.OnFinal != nil {
			s.OnFinal(&st)
		}
		s.enqueueCallback(r)
		s.mu.Lock()
		s.inflight = max(s.inflight-1, 0)
		delete(s.live, st.ID)
		for _, w := range s.waiters[st.ID] {
			w <- r // buffered: one send each
		}
		delete(s.waiters, st.ID)
		s.mu.Unlock()
	}
	return nil
}

// Handler is the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /submissions", s.create)
	mux.HandleFunc("GET /submissions/{token}", s.show)
	mux.HandleFunc("GET /submissions", s.authorized(s.index))
	mux.HandleFunc("POST /submissions/batch", s.batchCreate)
	mux.HandleFunc("GET /submissions/batch", s.batchShow)
	mux.HandleFunc("DELETE /submissions/{token}", s.authorized(s.destroy))
	mux.HandleFunc("GET /languages", s.languages)
	mux.HandleFunc("GET /languages/all", s.languagesAll)
	mux.HandleFunc("GET /languages/{id}", s.language)
	mux.HandleFunc("GET /statuses", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, judge0.Statuses) })
	mux.HandleFunc("GET /about", s.about)
	mux.HandleFunc("GET /version", text("1.13.1"))
	mux.HandleFunc("GET /license", text("GPL-3.0 (Judge0's API), served by codebench\n"))
	mux.HandleFunc("GET /isolate", text("codebench runs submissions in gVisor or a microVM, not isolate\n"))
	mux.HandleFunc("GET /config_info", s.configInfo)
	mux.HandleFunc("GET /statistics", s.statistics)
	mux.HandleFunc("GET /system_info", s.systemInfo)
	mux.HandleFunc("GET /workers", s.workers)
	mux.HandleFunc("GET /{$}", s.playground)
	mux.Handle("GET /playground/", http.StripPrefix("/playground/", http.FileServerFS(playgroundFiles)))
	mux.HandleFunc("GET /playground/languages", s.playgroundLanguages)
	mux.HandleFunc("POST /playground/submissions", s.playgroundSubmit)
	mux.HandleFunc("GET /playground/output/{token}", s.playgroundOutput)
	mux.HandleFunc("GET /api/v2/runtimes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.runtimes) })
	mux.HandleFunc("POST /api/v2/execute", s.execute)
	mux.HandleFunc("POST /authenticate", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /authorize", s.authorized(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", loopbackOnly(s.metrics.handler()))
	return s.metrics.observe(s.cors(s.authenticated(mux)))
}

// HTTPServer is the API's HTTP server: its routes, and its timeouts, so
// that a client that sends slowly, or not at all, cannot hold a connection.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{Handler: s.Handler(), ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, ReadTimeout: s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: s.cfg.IdleTimeout, MaxHeaderBytes: 64 << 10}
}

// readyz is 200 when the API can take submissions: its store answers and
// the broker is connected; else 503 with why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	err := s.store.Ping(r.Context())
	if err == nil && s.Ready != nil {
		err = s.Ready()
	}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, err.Error()+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}

// playgroundFiles are the playground page's files: no build step, nothing
// from elsewhere.
//
//go:embed playground/*
var playgroundRoot embed.FS

var playgroundFiles = mustSub(playgroundRoot, "playground")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// playground serves the page at /, with a policy that lets it load only
// from here.
func (s *Server) playground(w http.ResponseWriter, _ *http.Request) {
	b, err := fs.ReadFile(playgroundFiles, "index.html")
	if err != nil {
		http.Error(w, "no playground", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

// playgroundLanguages are the languages with a hello world each.
func (s *Server) playgroundLanguages(w http.ResponseWriter, _ *http.Request) {
	out := make([]map[string]any, 0, len(s.list))
	for _, l := range s.list {
		out = append(out, map[string]any{"id": l.ID, "name": l.Name, "hello": l.Hello})
	}
	writeJSON(w, http.StatusOK, out)
}

func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func errorJSON(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// cors answers as Judge0 does: every origin by default, preflights too.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := len(s.cfg.CORSOrigins) == 0 || slices.Contains(s.cfg.CORSOrigins, "*")
		if origin != "" && (allowed || slices.Contains(s.cfg.CORSOrigins, origin)) {
			if allowed {
				w.Header().Set("Access-Control-Allow-Origin", "*")
			} else {
				w.Header().Set("Access-Control-Allow-Origin", origin)
				w.Header().Add("Vary", "Origin")
			}
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD")
			w.Header().Set("Access-Control-Allow-Headers", "*")
			w.Header().Set("Access-Control-Max-Age", "7200")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticated requires one of the auth tokens, where there are any, in
// the header or the query parameter of that name (401, empty body).
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.cfg.AuthTokens) > 0 && !hasToken(r, s.cfg.AuthHeader, s.cfg.AuthTokens) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized requires one of the authz tokens (403 when none is given or
// none is configured).
func (s *Server) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(s.cfg.AuthzTokens) == 0 || !hasToken(r, s.cfg.AuthzHeader, s.cfg.AuthzTokens) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

func hasToken(r *http.Request, name string, tokens []string) bool {
	got := r.Header.Get(name)
	if got == "" {
		got = r.URL.Query().Get(name)
	}
	return got != "" && slices.Contains(tokens, got)
}

// newToken is a UUID v4, as Judge0's SecureRandom.uuid.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// readBody reads a bounded request body: false (answered 413) when over.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			errorJSON(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over %d bytes", s.cfg.MaxBody))
			return nil, false
		}
		errorJSON(w, http.StatusBadRequest, "cannot read the request body")
		return nil, false
	}
	return b, true
}

// validate checks one submission request as Judge0 does, then the
// language's compile-flag allow-list: the submission, or its errors (422).
func (s *Server) validate(req *judge0.Request, b64 bool) (*judge0.Submission, judge0.Errors) {
	sub, errs := judge0.Validate(req, s.langs, s.cfg.Limits, b64)
	if errs != nil {
		return nil, errs
	}
	if sub.CallbackURL != nil {
		if err := s.checkCallback(*sub.CallbackURL); err != nil {
			return nil, judge0.Errors{"callback_url": {err.Error()}}
		}
	}
	if sub.CompilerOptions != nil {
		if l := s.langs[sub.LanguageID]; l.CheckFlags != nil {
			if err := l.CheckFlags(strings.Fields(*sub.CompilerOptions)); err != nil {
				return nil, judge0.Errors{"compiler_options": {err.Error()}}
			}
		}
	}
	return sub, nil
}

// Why a submission was not queued.
var (
	errQueueFull = errors.New("queue is full")
	errStore     = errors.New("cannot store the submission")
	errPublish   = errors.New("cannot queue the submission: the broker is unavailable")
)

// submit queues one validated submission: a place under the queue bound,
// the record stored, the job published. On failure nothing is left behind
// (the place released, the record deleted) and the error is one of
// errQueueFull, errStore, errPublish. With wait, done is closed at the
// final status (registered before publishing; the caller awaits it).
func (s *Server) submit(ctx context.Context, sub *judge0.Submission, wait bool) (rec *judge0.Record, done chan *judge0.Record, err error) {
	return s.submitAs(ctx, newToken(), sub, wait)
}

// submitAs is submit with the token chosen.
func (s *Server) submitAs(ctx context.Context, token string, sub *judge0.Submission, wait bool) (rec *judge0.Record, done chan *judge0.Record, err error) {
	if !s.reserve(1) {
		return nil, nil, errQueueFull
	}
	rec = &judge0.Record{Token: token, Sub: *sub, StatusID: judge0.InQueue, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	t0 := time.Now()
	err = s.store.Insert(ctx, rec)
	s.metrics.step("insert", t0)
	if err != nil {
		s.release(1)
		s.log.Error("api: store", "err", err)
		return nil, nil, errStore
	}
	if wait {
		done = s.waitFor(rec.Token)
	}
	t0 = time.Now()
	err = s.publish(ctx, rec)
	s.metrics.step("publish", t0)
	if err != nil {
		// Not published: the token is not given out, the record goes.
		s.release(1)
		s.forget(rec.Token, done)
		_ = s.store.Delete(context.WithoutCancel(ctx), rec.Token)
		s.log.Error("api: publish", "token", rec.Token, "err", err)
		return nil, nil, errPublish
	}
	return rec, done, nil
}

// submitStatus is the HTTP status of a submit error.
func submitStatus(err error) int {
	if errors.Is(err, errStore) {
		return http.StatusInternalServerError
	}
	return http.StatusServiceUnavailable
}

// reserve takes a place in the queue bound: false when it is full.
func (s *Server) reserve(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight+n > s.cfg.MaxQueue {
		return false
	}
	s.inflight += n
	return true
}

func (s *Server) release(n int) {
	s.mu.Lock()
	s.inflight = max(s.inflight-n, 0)
	s.mu.Unlock()
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b64, wait := q.Get("base64_encoded") == "true", q.Get("wait") == "true"
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	sub, ok := s.readSubmission(w, r, b64)
	if !ok {
		return
	}
	rec, done, err := s.submit(r.Context(), sub, wait)
	if err != nil {
		errorJSON(w, submitStatus(err), err.Error())
		return
	}
	if !wait {
		writeJSON(w, http.StatusCreated, map[string]string{"token": rec.Token})
		return
	}
	final, ok := s.await(r.Context(), rec, done)
	switch {
	case !ok:
	case final != nil:
		s.write(w, http.StatusCreated, final, fields, b64) // as stored: no read back
	default:
		s.render(w, r.Context(), http.StatusCreated, rec.Token, fields, b64)
	}
}

// readSubmission reads, decodes and validates one submission from the
// request body; false: answered (413, 400 or 422).
func (s *Server) readSubmission(w http.ResponseWriter, r *http.Request, b64 bool) (*judge0.Submission, bool) {
	body, ok := s.readBody(w, r)
	if !ok {
		return nil, false
	}
	req, err := judge0.Decode(body)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, "the request body is not valid JSON: "+err.Error())
		return nil, false
	}
	sub, errs := s.validate(req, b64)
	if errs != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errs)
		return nil, false
	}
	return sub, true
}

// await waits for rec's final status (done, from waitFor), bounded by the
// job's own limits: every run at its wall limit, a compile, and a margin.
// The final record as stored, or nil when the bound passed; false: the
// client went away.
func (s *Server) await(ctx context.Context, rec *judge0.Record, done chan *judge0.Record) (*judge0.Record, bool) {
	defer s.forget(rec.Token, done)
	limit := time.Duration((rec.Sub.WallTimeLimit*float64(max(rec.Sub.NumberOfRuns, 1))+s.cfg.Limits.MaxWallTimeLimit)*float64(time.Second)) + 30*time.Second
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case final := <-done:
		return final, true
	case <-t.C:
		return nil, true
	case <-ctx.Done():
		return nil, false
	}
}

// execute is Piston's POST /api/v2/execute: JSON only (415), Piston's
// validation (400 {message}), the job run as a submission and awaited,
// then its stages.
func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, piston.Error{Message: "requests must be of type application/json"})
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	sub, rt, err := piston.Submission(body, s.runtimes, s.cfg.Limits)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, err)
		return
	}
	rec, done, err := s.submit(r.Context(), sub, true)
	if err != nil {
		writeJSON(w, submitStatus(err), piston.Error{Message: err.Error()})
		return
	}
	got, ok := s.await(r.Context(), rec, done)
	if !ok {
		return
	}
	if got == nil || got.FinishedAt == nil {
		writeJSON(w, http.StatusInternalServerError, piston.Error{Message: "the job did not finish in time"})
		return
	}
	writeJSON(w, http.StatusOK, piston.ResultOf(got, rt, s.langs[rt.JudgeID()].CompileCmd != nil))
}

// waitFor registers for the token's final record.
func (s *Server) waitFor(token string) chan *judge0.Record {
	c := make(chan *judge0.Record, 1)
	s.mu.Lock()
	s.waiters[token] = append(s.waiters[token], c)
	s.mu.Unlock()
	return c
}

func (s *Server) forget(token string, c chan *judge0.Record) {
	if c == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[token]
	if i := slices.Index(ws, c); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(s.waiters, token)
	} else {
		s.waiters[token] = ws
	}
}

// render answers one submission with fields.
func (s *Server) render(w http.ResponseWriter, ctx context.Context, code int, token string, fields []string, b64 bool) {
	if rec, ok := s.lookup(w, ctx, token); ok {
		s.write(w, code, rec, fields, b64)
	}
}

// lookup reads token's record; false: answered (404, or 500).
func (s *Server) lookup(w http.ResponseWriter, ctx context.Context, token string) (*judge0.Record, bool) {
	t0 := time.Now()
	rec, err := s.store.Get(ctx, token)
	s.metrics.step("read", t0)
	if errors.Is(err, store.ErrNotFound) {
		errorJSON(w, http.StatusNotFound, "Not Found")
		return nil, false
	}
	if err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot read the submission")
		return nil, false
	}
	return rec, true
}

// write answers rec with fields (400 for text that is not UTF-8 without
// base64, as Judge0).
func (s *Server) write(w http.ResponseWriter, code int, rec *judge0.Record, fields []string, b64 bool) {
	out, err := judge0.Render(rec, fields, b64, s.langs[rec.Sub.LanguageID].Name)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, code, out)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	s.render(w, r.Context(), http.StatusOK, r.PathValue("token"), fields, q.Get("base64_encoded") == "true")
}

// destroy is Judge0's: when deletion is enabled, a finished submission is
// deleted and answered with its fields, base64 whatever was asked (so that
// what was deleted can always be shown); one in queue or processing is a
// 400.
func (s *Server) destroy(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.EnableDelete {
		errorJSON(w, http.StatusBadRequest, "delete not allowed")
		return
	}
	fields, err := judge0.ParseFields(r.URL.Query().Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	rec, ok := s.lookup(w, r.Context(), r.PathValue("token"))
	if !ok {
		return
	}
	if rec.StatusID == judge0.InQueue || rec.StatusID == judge0.Processing {
		errorJSON(w, http.StatusBadRequest, fmt.Sprintf("submission cannot be deleted because its status is %d (%s)", rec.StatusID, judge0.StatusByID(rec.StatusID).Description))
		return
	}
	out, err := judge0.Render(rec, fields, true, s.langs[rec.Sub.LanguageID].Name)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.store.Delete(r.Context(), rec.Token); err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot delete the submission")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, perPage := 1, 20
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errorJSON(w, http.StatusBadRequest, "invalid page: "+v)
			return
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			errorJSON(w, http.StatusBadRequest, "invalid per_page: "+v)
			return
		}
		perPage = n
	}
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	b64 := q.Get("base64_encoded") == "true"
	recs, total, err := s.store.List(r.Context(), page, perPage)
	if err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot list submissions")
		return
	}
	subs := make([]any, 0, len(recs))
	for _, rec := range recs {
		out, err := judge0.Render(rec, fields, b64, s.langs[rec.Sub.LanguageID].Name)
		if err != nil {
			errorJSON(w, http.StatusBadRequest, err.Error())
			return
		}
		subs = append(subs, out)
	}
	pages := (total + perPage - 1) / perPage
	var next, prev any
	if page < pages {
		next = page + 1
	}
	if page > 1 {
		prev = page - 1
	}
	writeJSON(w, http.StatusOK, map[string]any{"submissions": subs, "meta": map[string]any{
		"current_page": page, "next_page": next, "prev_page": prev, "total_pages": pages, "total_count": total}})
}

// maxBatch is Judge0's max_submission_batch_size.
const maxBatch = 20

func (s *Server) batchCreate(w http.ResponseWriter, r *http.Request) {
	b64 := r.URL.Query().Get("base64_encoded") == "true"
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var batch struct {
		Submissions []json.RawMessage `json:"submissions"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		errorJSON(w, http.StatusBadRequest, "the request body is not valid JSON: "+err.Error())
		return
	}
	switch n := len(batch.Submissions); {
	case n == 0:
		errorJSON(w, http.StatusBadRequest, "there should be at least one submission in a batch")
		return
	case n > maxBatch:
		errorJSON(w, http.StatusBadRequest, fmt.Sprintf("number of submissions in a batch should be less than or equal to %d", maxBatch))
		return
	}
	out := make([]any, len(batch.Submissions))
	anyValid := false
	for i, raw := range batch.Submissions {
		req, err := judge0.Decode(raw)
		if err != nil {
			out[i] = map[string][]string{"submission": {"is not a JSON object"}}
			continue
		}
		sub, errs := s.validate(req, b64)
		if errs != nil {
			out[i] = errs
			continue
		}
		rec, _, err := s.submit(r.Context(), sub, false)
		if err != nil {
			out[i] = map[string]string{"error": err.Error()}
			continue
		}
		anyValid = true
		out[i] = map[string]string{"token": rec.Token}
	}
	code := http.StatusCreated
	if !anyValid {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, out)
}

func (s *Server) batchShow(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	tokens := strings.Split(q.Get("tokens"), ",")
	if q.Get("tokens") == "" {
		errorJSON(w, http.StatusBadRequest, "there should be at least one submission token")
		return
	}
	if len(tokens) > maxBatch {
		errorJSON(w, http.StatusBadRequest, fmt.Sprintf("number of submissions in a batch should be less than or equal to %d", maxBatch))
		return
	}
	b64 := q.Get("base64_encoded") == "true"
	out := make([]any, len(tokens))
	for i, t := range tokens {
		rec, err := s.store.Get(r.Context(), strings.TrimSpace(t))
		if err != nil {
			continue // null, as Judge0
		}
		v, err := judge0.Render(rec, fields, b64, s.langs[rec.Sub.LanguageID].Name)
		if err != nil {
			errorJSON(w, http.StatusBadRequest, err.Error())
			return
		}
		out[i] = v
	}
	writeJSON(w, http.StatusOK, map[string]any{"submissions": out})
}

func (s *Server) languages(w http.ResponseWriter, _ *http.Request) {
	out := make([]map[string]any, 0, len(s.list))
	for _, l := range s.list {
		out = append(out, map[string]any{"id": l.ID, "name": l.Name})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) languagesAll(w http.ResponseWriter, _ *http.Request) {
	out := make([]map[string]any, 0, len(s.list))
	for _, l := range s.list {
		out = append(out, map[string]any{"id": l.ID, "name": l.Name, "is_archived": l.IsArchived})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) language(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	l, ok := s.langs[id]
	if err != nil || !ok {
		errorJSON(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) about(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"version": "1.13.1", "homepage": "https://judge0.com", "source_code": "https://github.com/judge0/judge0",
		"maintainer": "codebench (a Judge0 CE 1.13.1 compatible API)",
	})
}

func (s *Server) configInfo(w http.ResponseWriter, _ *http.Request) {
	l := s.cfg.Limits
	writeJSON(w, http.StatusOK, map[string]any{
		"maintenance_mode": false, "enable_wait_result": true, "enable_compiler_options": l.EnableCompilerOptions,
		"allowed_languages_for_compile_options": []string{}, "enable_command_line_arguments": l.EnableArgs,
		"enable_submission_delete": s.cfg.EnableDelete, "enable_callbacks": l.EnableCallbacks, "callbacks_max_tries": s.cfg.CallbackTries,
		"callbacks_timeout": s.cfg.CallbackTimeout.Seconds(), "enable_additional_files": l.EnableAddFiles, "max_queue_size": s.cfg.MaxQueue,
		"cpu_time_limit": l.CPUTimeLimit, "max_cpu_time_limit": l.MaxCPUTimeLimit,
		"cpu_extra_time": l.CPUExtraTime, "max_cpu_extra_time": l.MaxCPUExtraTime,
		"wall_time_limit": l.WallTimeLimit, "max_wall_time_limit": l.MaxWallTimeLimit,
		"memory_limit": l.MemoryLimit, "max_memory_limit": l.MaxMemoryLimit,
		"stack_limit": l.StackLimit, "max_stack_limit": l.MaxStackLimit,
		"max_processes_and_or_threads": l.MaxProcesses, "max_max_processes_and_or_threads": l.MaxMaxProcesses,
		"enable_per_process_and_thread_time_limit": false, "allow_enable_per_process_and_thread_time_limit": false,
		"enable_per_process_and_thread_memory_limit": false, "allow_enable_per_process_and_thread_memory_limit": false,
		"max_file_size": l.MaxFileSize, "max_max_file_size": l.MaxMaxFileSize,
		"number_of_runs": l.NumberOfRuns, "max_number_of_runs": l.MaxNumberOfRuns,
		"redirect_stderr_to_stdout": l.RedirectDefault, "max_extract_size": l.MaxExtractSize,
		"enable_batched_submissions": true, "max_submission_batch_size": maxBatch,
		"submission_cache_duration": 1.0, "use_docs_as_homepage": false,
		"allow_enable_network": l.AllowEnableNetwork, "enable_network": false,
	})
}

func (s *Server) statistics(w http.ResponseWriter, r *http.Request) {
	counts, err := s.store.Counts(r.Context())
	if err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot count submissions")
		return
	}
	var statuses []map[string]any
	for _, st := range judge0.Statuses {
		if n := counts[st.ID]; n > 0 {
			statuses = append(statuses, map[string]any{"name": st.Description, "count": n})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"now": judge0.Timestamp(s.now()), "statuses": statuses})
}

// InFlight is the submissions accepted and not finished.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}
