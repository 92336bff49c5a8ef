// Package api is codebench's HTTP API: the routes of Judge0 CE 1.13.1 that
// its clients use, Piston v2's execute, the playground and the operations
// endpoints, over the same RabbitMQ jobs queue the workers serve.
//
// Every door turns a request into one submission model (internal/
// submission) through its codec (internal/judge0, internal/piston); the
// submissions service (submissions.go) stores it, publishes its job and
// takes the statuses that come back on a durable reply queue the workers
// allow, writing each to the store before it is acknowledged. The handler
// files are thin: judge0.go, piston.go, playground.go, ops.go.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/piston"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/submission"
)

// Config is the API's settings.
type Config struct {
	// AuthTokens, when any, are required of every request but the health
	// probes, in the AuthHeader header or query parameter (401 without);
	// AuthzTokens are required in AuthzHeader for the list and /authorize
	// (403).
	AuthTokens, AuthzTokens []string
	AuthHeader, AuthzHeader string
	// MaxQueue bounds the submissions in flight (503 beyond).
	MaxQueue int
	// CORSOrigins are the origins allowed; "*": any; none: CORS is off
	// (no page of another origin can read an answer).
	CORSOrigins []string
	// Hosts are the names a request's Host may give (none: the loopback
	// names); a request naming another is refused (421): a page whose name
	// was rebound to this address cannot reach the API.
	Hosts []string
	// ReplyQueue is the durable queue statuses come back on: this node's
	// own (Node names it), so that several API nodes on one store each
	// hear the statuses of the jobs they published.
	ReplyQueue string
	// Node names this API node in the store: the submissions it published
	// are its own to republish, and its heartbeat says it is alive.
	Node string
	// Quotas is what one client (its auth token, else its address) may
	// ask for; StoreMaxBytes bounds the store (0: no bound).
	Quotas        Quotas
	StoreMaxBytes int64
	// QueueTimeout is how long a submission may wait for a worker before
	// the reaper ends it (default 1 h); once a worker has it, the job's
	// own wall budget and a margin bound each status's coming.
	QueueTimeout time.Duration
	// MaxBody bounds a request body (413 beyond).
	MaxBody int64
	// Policy is what the workers accept: every door's limits are
	// validated and clamped against it, once, in the job's units.
	Policy job.Policy
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

// Quotas are one client's bounds (0: none): submissions in flight, made
// in the last minute, the sandbox time its submissions in flight may take
// at their limits, and callbacks waiting to be sent. Beyond one, 429 with
// Retry-After; the other clients' submissions go on.
type Quotas struct {
	InFlight, PerMinute int
	Sandbox             time.Duration
	Callbacks           int
}

// withDefaults is c with every unset bound at its default.
func (c Config) withDefaults() Config {
	if c.AuthHeader == "" {
		c.AuthHeader = "X-Auth-Token"
	}
	if c.AuthzHeader == "" {
		c.AuthzHeader = "X-Auth-User"
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 8 << 20
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 10000
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.ReadHeaderTimeout, 10 * time.Second}, {&c.ReadTimeout, time.Minute}, {&c.IdleTimeout, 2 * time.Minute}, {&c.WriteTimeout, 15 * time.Minute},
		{&c.CallbackTimeout, 5 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if c.CallbackTries <= 0 {
		c.CallbackTries = 3
	}
	if c.QueueTimeout <= 0 {
		c.QueueTimeout = time.Hour
	}
	return c
}

// Store is what the API keeps submissions in (internal/store).
type Store interface {
	Insert(ctx context.Context, r *submission.Record, node string, deadline time.Time, budget time.Duration) error
	Update(ctx context.Context, r *submission.Record, deadline time.Time) (bool, error)
	Get(ctx context.Context, token string) (*submission.Record, error)
	List(ctx context.Context, page, perPage int) ([]*submission.Record, int, error)
	Pending(ctx context.Context, node string, n int) ([]*submission.Record, error)
	UsageOf(ctx context.Context, owner string, since time.Time) (submission.Usage, error)
	Size(ctx context.Context) (int64, error)
	Unfinished(ctx context.Context, node string) (mine, all int, err error)
	Overdue(ctx context.Context, now time.Time, n int) ([]*submission.Record, error)
	Heartbeat(ctx context.Context, node string, now time.Time) error
	Adopt(ctx context.Context, node string, aliveSince time.Time, n int) ([]*submission.Record, error)
	Delete(ctx context.Context, token string) error
	Counts(ctx context.Context) (map[submission.Outcome]int, error)
	Ping(ctx context.Context) error
}

// Publisher publishes a job whose statuses go to replyTo.
type Publisher interface {
	PublishJobReply(ctx context.Context, body []byte, replyTo, correlationID string) error
}

// QueueInspector tells the jobs queue's messages ready and its consumers
// (the workers).
type QueueInspector interface {
	JobsQueue(ctx context.Context) (messages, consumers int, err error)
}

// Languages are the languages the image has (ours, by name) and what each
// one's version command printed (the image's manifest): every door names
// them its own way.
type Languages struct {
	Ours     map[string]lang.Language
	Versions map[string]string
}

// Deps are the API's collaborators.
type Deps struct {
	Store     Store
	Publisher Publisher
	Languages Languages
	Log       *slog.Logger
	// Queue, when set, inspects the jobs queue (GET /workers).
	Queue QueueInspector
	// Ready, when set, says whether the API can take submissions (the
	// broker is connected).
	Ready func() error
	// OnFinal, when set, sees each final status once it is stored.
	OnFinal func(*job.Status)
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Server serves the API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	store   Store
	queue   QueueInspector
	ready   func() error
	onFinal func(*job.Status)

	subs    *submissions
	live    *liveOutputs
	calls   *callbacks
	metrics *metrics
	judge0  *judge0.Codec
	piston  []piston.Runtime
	bounds  piston.Bounds
	jobs    *jobsQueueLook
	// bodies holds room for the request bodies being read and handled.
	bodies *semaphore.Weighted
	stats  *statsCache
}

// New makes a server.
func New(cfg Config, d Deps) *Server {
	cfg = cfg.withDefaults()
	if d.Now == nil {
		d.Now = time.Now
	}
	lim := judge0.LimitsFor(cfg.Policy)
	lim.EnableCallbacks = len(cfg.CallbackAllow) > 0
	s := &Server{cfg: cfg, log: d.Log, now: d.Now, store: d.Store, queue: d.Queue, ready: d.Ready, onFinal: d.OnFinal,
		live:   newLiveOutputs(),
		judge0: judge0.New(judge0.Languages(d.Languages.Ours, d.Languages.Versions), lim),
		piston: piston.Runtimes(d.Languages.Ours, d.Languages.Versions), bounds: piston.BoundsFor(cfg.Policy),
		jobs: &jobsQueueLook{}, bodies: semaphore.NewWeighted(maxBodies * cfg.MaxBody), stats: &statsCache{}}
	s.subs = &submissions{store: d.Store, pub: d.Publisher, replyQueue: cfg.ReplyQueue, node: cfg.Node, maxQueue: cfg.MaxQueue,
		queueTimeout: cfg.QueueTimeout, quotas: cfg.Quotas, storeMax: cfg.StoreMaxBytes, policy: cfg.Policy, log: d.Log, now: d.Now,
		waiters: map[string][]chan *submission.Record{}}
	s.metrics = newMetrics(s.subs.InFlight)
	s.subs.metrics = s.metrics
	s.calls = newCallbacks(cfg, s.judge0, s.metrics, d.Log)
	s.subs.callbacksOf = s.calls.pendingOf
	return s
}

// InFlight is the submissions accepted and not finished, every node's.
func (s *Server) InFlight() int { return s.subs.InFlight() }

// Recover publishes again every unfinished submission the store has (see
// submissions.recover).
func (s *Server) Recover(ctx context.Context) (int, error) { return s.subs.recover(ctx) }

// RunCallbacks sends callbacks until ctx ends (see callbacks.run).
func (s *Server) RunCallbacks(ctx context.Context) { s.calls.run(ctx) }

// HandleStatus takes one status from the reply queue: it is written to the
// store before it returns nil (then the caller acknowledges it). A status
// of a token the store does not have, or not published by the workers'
// user with codebench's app_id (a producer may name this queue as its
// reply_to and forge a verdict for a token it learnt), is dropped (nil).
func (s *Server) HandleStatus(ctx context.Context, m queue.Message) error {
	st, why := s.subs.status(m, s.cfg.WorkerUser)
	if st == nil {
		s.log.Warn("api: a reply dropped", "why", why)
		s.metrics.statuses.WithLabelValues(why).Inc()
		return nil
	}
	if st.Status == job.StatusOutput {
		s.live.add(st) // the playground's; the final status has it all
		return nil
	}
	rec, final, err := s.subs.take(ctx, st)
	if errors.Is(err, errForeign) {
		s.log.Warn("api: a status without its job's reply secret, dropped", "token", st.ID)
		s.metrics.statuses.WithLabelValues("wrong reply secret").Inc()
		return nil
	}
	if err != nil {
		return err
	}
	if rec == nil {
		s.metrics.statuses.WithLabelValues("unknown token").Inc()
		return nil
	}
	s.metrics.statuses.WithLabelValues("stored").Inc()
	if final {
		s.finished(rec, st)
	}
	return nil
}

// finished is what follows a submission's final status, once stored: the
// hook, the callback, the live output's slot.
func (s *Server) finished(rec *submission.Record, st *job.Status) {
	if s.onFinal != nil {
		s.onFinal(st)
	}
	s.calls.enqueue(rec)
	s.live.end(rec.Token)
}

// reapBatch is how many overdue submissions one Tend ends, at most.
const reapBatch = 100

// Tend is what a node does now and then, beside serving: it says it is
// alive, publishes again (with its own reply queue) the unfinished
// submissions of nodes no longer alive, and ends every submission whose
// final status is overdue (Judge0's Internal Error, with a message saying
// so): a worker, a broker or a node lost it. aliveSince is when a node
// must have been seen to count as alive.
func (s *Server) Tend(ctx context.Context, aliveSince time.Time) error {
	if err := s.store.Heartbeat(ctx, s.cfg.Node, s.now()); err != nil {
		return err
	}
	adopted, err := s.store.Adopt(ctx, s.cfg.Node, aliveSince, reapBatch)
	if err != nil {
		return err
	}
	s.subs.adopted(len(adopted))
	for _, rec := range adopted {
		if err := s.subs.publish(ctx, rec); err != nil {
			s.log.Warn("api: a submission adopted from a node gone could not be published again", "token", rec.Token, "err", err)
		}
	}
	if len(adopted) > 0 {
		s.log.Info("api: adopted the unfinished submissions of nodes gone", "n", len(adopted))
	}
	overdue, err := s.store.Overdue(ctx, s.now(), reapBatch)
	if err != nil {
		return err
	}
	for _, rec := range overdue {
		st := job.Internal(rec.Token, "no result came within the job's time limits plus a margin: the worker, the broker or an API node lost it", nil)
		st.ReplySecret = rec.Job.ReplySecret
		if _, final, err := s.subs.take(ctx, st); err != nil {
			return err
		} else if final {
			s.log.Warn("api: an overdue submission ended", "token", rec.Token)
			s.metrics.statuses.WithLabelValues("reaped").Inc()
			s.finished(rec, st)
		}
	}
	return nil
}

// Handler is the API's routes, in groups, each with its own middleware:
// the health probes answer anyone; everything else needs the auth token
// where tokens are configured; the list, DELETE and /authorize need the
// authz token too; /metrics answers loopback clients only.
func (s *Server) Handler() http.Handler {
	open := http.NewServeMux()
	open.HandleFunc("GET /healthz", s.healthz)
	open.HandleFunc("GET /readyz", s.readyz)

	authed := http.NewServeMux()
	s.judge0Routes(authed)
	s.pistonRoutes(authed)
	s.playgroundRoutes(authed)
	s.opsRoutes(authed)
	open.Handle("/", s.authenticated(jsonBodies(authed)))
	return s.metrics.observe(s.allowedHost(s.cors(open)))
}

// HTTPServer is the API's HTTP server: its routes, and its timeouts, so
// that a client that sends slowly, or not at all, cannot hold a connection.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{Handler: s.Handler(), ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, ReadTimeout: s.cfg.ReadTimeout,
		WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: s.cfg.IdleTimeout, MaxHeaderBytes: 64 << 10}
}
