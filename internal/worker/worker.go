// Package worker serves jobs from the broker: one job, one fresh sandbox from
// the warm pool, every status published and confirmed, the job acked only
// after its final status is confirmed, the sandbox stopped afterwards. It
// depends on small interfaces (a broker session, a pool of sandboxes), so
// every ack/requeue decision is tested with fakes, without a broker or VMs.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
)

// Config is the worker's data.
type Config struct {
	Concurrency  int
	PoolWait     time.Duration // how long a job waits for a sandbox
	Grace        time.Duration // how long in-flight jobs may finish on shutdown
	ReconnectMax time.Duration
	// After waits before a redial (nil: time.After); tests inject it.
	After func(time.Duration) <-chan time.Time
	// MaxStatusBytes caps a status message; the broker's own limit, as the
	// session knows it, caps it further. Larger statuses have their texts
	// trimmed (job.Status.Fit).
	MaxStatusBytes int
	// MaxRequeues is how often this worker requeues one job (a failure to
	// publish, a lost sandbox) before it ends it with internal_error
	// instead, so that no message loops forever.
	MaxRequeues int
	// Ready, when set, is closed once the pool can serve: the worker
	// consumes only then (it declares its topology before, so jobs
	// published meanwhile are kept).
	Ready <-chan struct{}
	// StatusQueueWithReply: a job sent with a reply_to also gets its
	// job_status_<id> queue (true, the seed's behaviour); false sends such a
	// job's statuses to reply_to only.
	StatusQueueWithReply bool
	// Observer hears what happens (metrics); nil: nobody.
	Observer Observer
	// Networked hands out sandboxes with a network, for jobs that ask for
	// one (the policy lets them only when it is set).
	Networked Pool
	// ReplyTo says which AMQP reply_to a job may name (queue.ReplyPolicy:
	// direct reply-to and server-named queues, plus a pattern); a job
	// naming another queue is invalid.
	ReplyTo queue.ReplyPolicy
}

// Observer is told what the worker does, for metrics.
type Observer interface {
	JobFinished(language, status, verdict string, tm job.Timings)
	JobRequeued(reason string)
	DeadLettered()
	StatusTrimmed(bytes int)
	Reconnected()
	Consuming(bool)
}

// noObserver is the Observer of a worker without one.
type noObserver struct{}

func (noObserver) JobFinished(string, string, string, job.Timings) {}
func (noObserver) JobRequeued(string)                              {}
func (noObserver) DeadLettered()                                   {}
func (noObserver) StatusTrimmed(int)                               {}
func (noObserver) Reconnected()                                    {}
func (noObserver) Consuming(bool)                                  {}

// route is where one job's statuses go: its status queue, and the reply
// queue of a requester that asked (AMQP reply_to, with its correlation id).
type route struct {
	statusQueue            bool
	replyTo, correlationID string
}

// routeOf is where a delivery's statuses go. A reply_to the policy refuses
// is dropped from the route (the job's status queue is used instead) and
// the error says why.
func (w *Worker) routeOf(d queue.Delivery) (route, error) {
	if err := w.cfg.ReplyTo.Check(d.ReplyTo); err != nil {
		return route{statusQueue: true}, err
	}
	return route{statusQueue: d.ReplyTo == "" || w.cfg.StatusQueueWithReply, replyTo: d.ReplyTo, correlationID: d.CorrelationID}, nil
}

// statusHeadroom is left under the broker's limit for the message's
// properties and headers.
const statusHeadroom = 16 << 10

// Publisher is what handling one job needs of the broker. Every publish
// waits for the broker's confirm.
type Publisher interface {
	DeclareStatusQueue(id string) error
	// StatusQueueExists reports whether job_status_<id> exists, without
	// creating it.
	StatusQueueExists(id string) (bool, error)
	// PublishStatus fails with queue.ErrTooLarge when the broker refuses a
	// message as too large; MaxMessageSize then reports its limit.
	PublishStatus(ctx context.Context, id string, body []byte) error
	// PublishReply publishes a status to a requester's reply queue.
	PublishReply(ctx context.Context, replyTo, correlationID string, body []byte) error
	DeadLetter(ctx context.Context, body []byte, reason string) error
	MaxMessageSize() int
}

// Session is one broker connection: a Publisher that also consumes jobs.
type Session interface {
	Publisher
	// Consume delivers jobs until the consumer is cancelled or the
	// connection is lost, then closes the channel.
	Consume() (<-chan queue.Delivery, error)
	StopConsuming() error
	// Closed delivers why the connection was lost, then is closed.
	Closed() <-chan error
	Close() error
}

// Dial opens a broker session.
type Dial func(ctx context.Context) (Session, error)

// Sandbox is a fresh sandbox from the pool: it runs one job, then is stopped.
type Sandbox interface {
	execute.Sandbox
	ID() string
	Stop(ctx context.Context) error
}

// Pool hands out sandboxes, each at most once.
type Pool interface {
	Take(ctx context.Context) (Sandbox, error)
}

// FromPool adapts a pool of a concrete member type to Pool.
func FromPool[T Sandbox](p interface {
	Take(context.Context) (T, error)
}) Pool {
	return poolOf[T]{p}
}

type poolOf[T Sandbox] struct {
	p interface {
		Take(context.Context) (T, error)
	}
}

func (p poolOf[T]) Take(ctx context.Context) (Sandbox, error) {
	m, err := p.p.Take(ctx)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Outcome is what becomes of a delivery.
type Outcome int

const (
	// Ack: the job is done with (final status confirmed, or refused and
	// reported).
	Ack Outcome = iota
	// Requeue: it could not be finished here through no fault of its own
	// (a shutdown, a lost connection); back to the queue, to run again
	// (here or on another worker). A nack: a quorum queue's delivery
	// limit does not count it.
	Requeue
	// Reject: nack without requeue. Only for a message that can be neither
	// run, reported nor dead-lettered by us, again and again; the broker
	// dead-letters it if the queue has a dead-letter exchange.
	Reject
	// Retry: back to the queue after a failure that may be the job's own
	// (a lost sandbox): basic.reject, which a quorum queue's delivery
	// limit counts.
	Retry
)

func (o Outcome) String() string {
	return [...]string{"ack", "requeue", "reject", "retry"}[o]
}

// Worker consumes jobs.
type Worker struct {
	cfg    Config
	policy job.Policy
	pool   Pool
	dial   Dial
	log    *slog.Logger

	requeues *requeues
	obs      Observer
	// consuming is true while serve consumes: connected, consuming.
	consuming atomic.Bool

	abortOnce sync.Once
	abort     chan struct{} // closed by Abort: skip the grace period
}

// New wires a worker.
func New(cfg Config, policy job.Policy, p Pool, dial Dial, log *slog.Logger) *Worker {
	if cfg.MaxStatusBytes <= 0 {
		cfg.MaxStatusBytes = 8 << 20
	}
	if cfg.MaxRequeues <= 0 {
		cfg.MaxRequeues = 5
	}
	if cfg.ReconnectMax < initialBackoff {
		// Zero would redial in a hot loop.
		cfg.ReconnectMax = 30 * time.Second
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	// Jobs may ask for a network exactly when there are networked
	// sandboxes to hand them.
	policy.Network = cfg.Networked != nil
	obs := cfg.Observer
	if obs == nil {
		obs = noObserver{}
	}
	return &Worker{cfg: cfg, policy: policy, pool: p, dial: dial, log: log, abort: make(chan struct{}),
		requeues: newRequeues(10_000), obs: obs}
}

// Consuming reports whether the worker is connected to the broker and
// consuming jobs (for /readyz).
func (w *Worker) Consuming() bool { return w.consuming.Load() }

// Abort ends the grace period of a shutdown in progress (a second signal).
func (w *Worker) Abort() { w.abortOnce.Do(func() { close(w.abort) }) }

var errConnLost = errors.New("worker: broker connection lost")

// initialBackoff is the first wait before redialing the broker; it doubles
// up to ReconnectMax.
const initialBackoff = 200 * time.Millisecond

// Run serves until ctx is cancelled, reconnecting to the broker with
// exponential backoff and jitter. On cancellation it stops consuming, lets
// in-flight jobs finish within the grace period (the rest are requeued) and
// returns nil.
func (w *Worker) Run(ctx context.Context) error {
	backoff := initialBackoff
	lost := false
	for {
		sess, err := w.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d := backoff/2 + rand.N(backoff/2+1)
			w.log.Warn("broker unreachable, retrying", "err", err, "in", d.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return nil
			case <-w.cfg.After(d):
			}
			backoff = min(backoff*2, w.cfg.ReconnectMax)
			continue
		}
		backoff = initialBackoff
		if lost {
			w.obs.Reconnected()
		}
		if w.cfg.Ready != nil {
			select {
			case <-w.cfg.Ready:
			default:
				w.log.Info("connected to broker; waiting for the pool before consuming")
				select {
				case <-w.cfg.Ready:
				case <-ctx.Done():
					_ = sess.Close()
					return nil
				}
			}
		}
		w.log.Info("connected to broker; consuming", "queue", queue.JobsQueue, "prefetch", w.cfg.Concurrency)
		err = w.serve(ctx, sess)
		_ = sess.Close()
		if ctx.Err() != nil {
			return nil
		}
		lost = true
		w.log.Warn("reconnecting", "err", err)
	}
}

// serve consumes on one session until it is lost or ctx ends.
func (w *Worker) serve(ctx context.Context, sess Session) error {
	closed := sess.Closed()
	deliveries, err := sess.Consume()
	if err != nil {
		return err
	}
	w.consuming.Store(true)
	w.obs.Consuming(true)
	defer func() {
		w.consuming.Store(false)
		w.obs.Consuming(false)
	}()
	// Jobs outlive the shutdown signal for the grace period; cancelJobs
	// ends them (they are requeued).
	jobsCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	slots := make(chan struct{}, w.cfg.Concurrency)
	for {
		select {
		case <-ctx.Done():
			_ = sess.StopConsuming()
			w.drain(&wg, cancelJobs)
			return nil
		case e := <-closed:
			cancelJobs()
			wg.Wait()
			return fmt.Errorf("%w: %v", errConnLost, e)
		case d, ok := <-deliveries:
			if !ok {
				cancelJobs()
				wg.Wait()
				return errConnLost
			}
			slots <- struct{}{} // prefetch already bounds this; belt and braces
			wg.Go(func() {
				defer func() { <-slots }()
				w.process(jobsCtx, sess, d)
			})
		}
	}
}

func (w *Worker) drain(wg *sync.WaitGroup, cancelJobs context.CancelFunc) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	w.log.Info("draining in-flight jobs", "grace", w.cfg.Grace)
	select {
	case <-done:
		return
	case <-time.After(w.cfg.Grace):
		w.log.Warn("grace period over: requeueing unfinished jobs")
	case <-w.abort:
		w.log.Warn("second signal: requeueing unfinished jobs now")
	}
	cancelJobs()
	<-done
}

// process runs one delivery to its end: handle decides, the delivery is
// settled, and only then is the job's sandbox stopped (its teardown is not
// on the job's path).
func (w *Worker) process(ctx context.Context, pub Publisher, d queue.Delivery) {
	o, sb, log := w.handle(ctx, pub, d)
	if o == Retry && ctx.Err() != nil {
		o = Requeue // a shutdown is not the job's fault
	}
	settle(d, o, log)
	if sb != nil {
		w.stopSandbox(ctx, sb, log)
	}
}

// requeue is handle's way out for a job that could not be finished here.
// A status the broker refused (while connected) ends the job at once: it
// is dead-lettered with the reason and acked, since publishing again will
// not help. Otherwise a job requeued MaxRequeues times by this worker is
// ended instead (the cause is likely the job itself); a worker shutting
// down always requeues.
func (w *Worker) requeue(ctx context.Context, pub Publisher, rt route, d queue.Delivery, id, lang string, tm job.Timings, start time.Time, log *slog.Logger, why string, err error) Outcome {
	if ctx.Err() != nil {
		return w.requeued(log, why, err)
	}
	if refused(err) {
		return w.deadLetter(ctx, pub, d, log, fmt.Sprintf("job %s: the broker refused its status (%s): %v", id, why, err))
	}
	n := w.requeues.add(requeueKey(id, d.Body))
	if n <= w.cfg.MaxRequeues {
		w.requeued(log, why, err)
		return Retry
	}
	log.Error("job requeued too often by this worker; ending it", "requeues", n-1, "why", why, "err", err)
	st := job.Internal(id, fmt.Sprintf("this worker could not finish the job %d times (the last time: %s)", n-1, why), err)
	if err := w.finish(ctx, pub, rt, st, lang, tm, start, log); err != nil {
		if refused(err) {
			return w.deadLetter(ctx, pub, d, log, fmt.Sprintf("job %s: the broker refused its final status: %v", id, err))
		}
		// Not even this status could be published: the broker is
		// unreachable and the job is requeued, not lost.
		return w.requeued(log, "final status not confirmed", err)
	}
	w.requeues.forget(requeueKey(id, d.Body))
	return Ack
}

// refused reports whether the broker, still connected, refused a publish:
// trying again will not help.
func refused(err error) bool {
	return errors.Is(err, queue.ErrRefused) || errors.Is(err, queue.ErrTooLarge)
}

// deadLetter ends a job whose statuses cannot be delivered: the job goes to
// jobs.dead with the reason and is acked. If even that is refused, the job
// is rejected (the broker drops it, or dead-letters it where the queue has
// a dead-letter exchange); if the connection is gone, it is requeued.
func (w *Worker) deadLetter(ctx context.Context, pub Publisher, d queue.Delivery, log *slog.Logger, reason string) Outcome {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	log.Error("job ended: dead-lettered", "reason", reason)
	err := pub.DeadLetter(ctx, d.Body, reason)
	switch {
	case err == nil:
		w.obs.DeadLettered()
		return Ack
	case refused(err):
		log.Error("dead-lettering refused too; rejecting the job", "err", err)
		w.obs.DeadLettered()
		return Reject
	}
	return w.requeued(log, "could not dead-letter a job whose status was refused", err)
}

// settle is the one place a delivery is acked or requeued.
func settle(d queue.Delivery, o Outcome, log *slog.Logger) {
	var err error
	switch o {
	case Ack:
		err = d.Ack()
	case Requeue:
		err = d.Nack(true)
	case Reject:
		err = d.Nack(false)
	case Retry:
		err = d.Reject(true)
	}
	if err != nil {
		// The broker redelivers an unsettled job when the channel closes.
		log.Warn("settling the delivery failed; the broker will redeliver it", "outcome", o, "err", err)
	}
}

// handle runs one job and decides its outcome. It returns the sandbox the
// job ran on (nil if none), for the caller to stop after settling.
func (w *Worker) handle(ctx context.Context, pub Publisher, d queue.Delivery) (Outcome, Sandbox, *slog.Logger) {
	start := time.Now()
	rt, rtErr := w.routeOf(d)
	j, err := job.Decode(d.Body, w.policy)
	if err == nil && rtErr != nil {
		err = &job.InvalidError{ID: j.ID, Reason: rtErr.Error()}
	}
	if err != nil {
		return w.reject(ctx, pub, rt, d.Body, err)
	}
	log := w.log.With("job_id", j.ID, "language", j.Language, "redelivered", d.Redelivered)
	log.Info("job received")
	var tm job.Timings
	if !d.PublishedAt.IsZero() {
		tm.QueueWaitUS = max(start.Sub(d.PublishedAt).Microseconds(), 0)
	}
	again := func(why string, err error) Outcome {
		return w.requeue(ctx, pub, rt, d, j.ID, j.Language, tm, start, log, why, err)
	}
	if rt.statusQueue {
		if err := pub.DeclareStatusQueue(j.ID); err != nil {
			return again("declare status queue", err), nil, log
		}
	}
	t := time.Now()
	if err := w.publish(ctx, pub, rt, job.Progress(j.ID, job.StatusReceived)); err != nil {
		return again("publish received", err), nil, log
	}
	tm.PublishUS = time.Since(t).Microseconds()

	t = time.Now()
	takeCtx, cancel := context.WithTimeout(ctx, w.cfg.PoolWait)
	pool := w.pool
	if j.Network {
		pool = w.cfg.Networked
	}
	sb, err := pool.Take(takeCtx)
	cancel()
	tm.PoolWaitUS = time.Since(t).Microseconds()
	if err != nil {
		if ctx.Err() != nil {
			return w.requeued(log, "shutting down", err), nil, log
		}
		st := job.Internal(j.ID, fmt.Sprintf("no sandbox became available within %s", w.cfg.PoolWait), err)
		if err := w.finish(ctx, pub, rt, st, j.Language, tm, start, log); err != nil {
			return again("final status not confirmed", err), nil, log
		}
		return Ack, nil, log
	}
	log = log.With("vm_id", sb.ID())

	t = time.Now()
	if err := w.publish(ctx, pub, rt, job.Progress(j.ID, job.StatusRunning)); err != nil {
		return again("publish running", err), sb, log
	}
	tm.PublishUS += time.Since(t).Microseconds()
	var progress func(agentproto.Output)
	var streamed func()
	if j.Stream {
		progress, streamed = w.streamOutput(ctx, pub, rt, j.ID, log)
	}
	st := execute.Job(ctx, w.policy, sb, j, progress)
	if streamed != nil {
		streamed() // every output status goes before the final one
	}
	if ctx.Err() != nil {
		return w.requeued(log, "cancelled while running", ctx.Err()), sb, log
	}
	if err := w.finish(ctx, pub, rt, st, j.Language, tm, start, log); err != nil {
		return again("final status not confirmed", err), sb, log
	}
	return Ack, sb, log
}

func (w *Worker) requeued(log *slog.Logger, why string, err error) Outcome {
	log.Warn("job requeued", "why", why, "err", err)
	w.obs.JobRequeued(why)
	return Requeue
}

// finish publishes the final status with the host's timings added to the
// sandbox's; it returns why the status was not confirmed, for the caller
// to requeue or end the job.
func (w *Worker) finish(ctx context.Context, pub Publisher, rt route, st *job.Status, lang string, tm job.Timings, start time.Time, log *slog.Logger) error {
	if a := st.Timings; a != nil {
		tm.AgentUS, tm.DispatchUS, tm.CompileUS, tm.RunUS, tm.GuestUS = a.AgentUS, a.DispatchUS, a.CompileUS, a.RunUS, a.GuestUS
	}
	tm.TotalUS = time.Since(start).Microseconds()
	st.Timings = &tm
	t := time.Now()
	if err := w.publish(ctx, pub, rt, st); err != nil {
		log.Warn("final status not confirmed", "err", err)
		return err
	}
	w.obs.JobFinished(lang, st.Status, st.Verdict, tm)
	log.Info("job finished", "status", st.Status, "verdict", st.Verdict, "message", st.Message,
		"queue_wait_us", tm.QueueWaitUS, "pool_wait_us", tm.PoolWaitUS, "publish_us", tm.PublishUS,
		"dispatch_us", tm.DispatchUS, "compile_us", tm.CompileUS, "run_us", tm.RunUS, "guest_us", tm.GuestUS,
		"total_us", tm.TotalUS, "final_publish_us", time.Since(t).Microseconds())
	return nil
}

// publish publishes one status where rt says, fitted to the status size
// limit; when the broker refuses it as too large (its real limit was lower
// than we knew), it is fitted to the limit the broker gave and published
// once more.
func (w *Worker) publish(ctx context.Context, pub Publisher, rt route, st *job.Status) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	send := func(body []byte) error {
		if rt.statusQueue {
			if err := pub.PublishStatus(ctx, st.ID, body); err != nil {
				return err
			}
		}
		if rt.replyTo != "" {
			return pub.PublishReply(ctx, rt.replyTo, rt.correlationID, body)
		}
		return nil
	}
	var err error
	for range 2 {
		limit := w.statusLimit(pub)
		body := st.Marshal()
		if len(body) > limit && st.Fit(limit) {
			before := len(body)
			body = st.Marshal()
			w.obs.StatusTrimmed(before - len(body))
			w.log.Warn("status trimmed to fit", "job_id", st.ID, "limit", limit, "bytes", before, "trimmed_to", len(body))
		}
		if err = send(body); !errors.Is(err, queue.ErrTooLarge) {
			return err
		}
	}
	return err
}

// streamOutput publishes a job's streamed output as "output" statuses, in
// order, from a goroutine of its own so the agent's reader never waits for
// the broker. done waits until every queued status is published; chunks
// that find the queue full are dropped (the final status has all the
// output).
func (w *Worker) streamOutput(ctx context.Context, pub Publisher, rt route, id string, log *slog.Logger) (progress func(agentproto.Output), done func()) {
	ch := make(chan agentproto.Output, 64)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for o := range ch {
			if err := w.publish(ctx, pub, rt, job.Output(id, o.Seq, o.Stdout, o.Stderr)); err != nil {
				log.Warn("output status not published", "seq", o.Seq, "err", err)
			}
		}
	}()
	progress = func(o agentproto.Output) {
		select {
		case ch <- o:
		default:
			log.Warn("output status dropped: the broker is behind", "seq", o.Seq)
		}
	}
	return progress, func() { close(ch); <-finished }
}

// statusLimit is the most a status may take: the configured cap, and the
// broker's limit less room for the message's properties.
func (w *Worker) statusLimit(pub Publisher) int {
	return min(w.cfg.MaxStatusBytes, pub.MaxMessageSize()-statusHeadroom)
}

// reject answers an invalid job: a failed/invalid_job status where the id
// is usable, and the message to jobs.dead with the reason where the body
// could not be decoded or has no usable id. An invalid job costs the broker
// nothing lasting: its status goes to its reply_to, or to its status queue
// only where that exists already (a producer that follows its job declared
// it), never to a queue made for it. Either way it is acked once reported:
// retrying cannot make it valid.
func (w *Worker) reject(ctx context.Context, pub Publisher, rt route, body []byte, err error) (Outcome, Sandbox, *slog.Logger) {
	var inv *job.InvalidError
	if !errors.As(err, &inv) {
		inv = &job.InvalidError{Reason: err.Error()}
	}
	log := w.log.With("job_id", inv.ID)
	log.Warn("invalid job", "reason", inv.Reason) // bounded by job.Decode
	w.obs.JobFinished("", job.StatusFailed, job.VerdictInvalidJob, job.Timings{})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	key := requeueKey(inv.ID, body)
	if inv.ID == "" && rt.replyTo != "" {
		// The requester hears back even without an id (best effort: the
		// message is dead-lettered below either way).
		_ = w.publish(ctx, pub, route{replyTo: rt.replyTo, correlationID: rt.correlationID}, job.Invalid("", inv.Reason))
	}
	if inv.ID == "" || inv.Malformed {
		err := pub.DeadLetter(ctx, body, inv.Reason)
		if err == nil {
			w.obs.DeadLettered()
		}
		if err != nil {
			if refused(err) || w.requeues.add(key) > w.cfg.MaxRequeues {
				// It cannot be dead-lettered (nor, without an id,
				// reported): the broker may drop or dead-letter it.
				log.Error("invalid job could not be dead-lettered; rejecting it", "err", err)
				w.obs.DeadLettered()
				return Reject, nil, log
			}
			return w.requeued(log, "could not dead-letter an invalid job", err), nil, log
		}
	}
	if inv.ID != "" {
		dest := rt
		var err error
		if dest.statusQueue {
			dest.statusQueue, err = pub.StatusQueueExists(inv.ID)
		}
		if err == nil && (dest.statusQueue || dest.replyTo != "") {
			err = w.publish(ctx, pub, dest, job.Invalid(inv.ID, inv.Reason))
		}
		switch {
		case err == nil:
		case refused(err):
			log.Warn("the broker refused an invalid job's status; acking it", "err", err)
		case w.requeues.add(key) > w.cfg.MaxRequeues:
			log.Error("invalid job could not be reported, again; acking it (it was dead-lettered if malformed)", "err", err)
		default:
			return w.requeued(log, "could not report an invalid job", err), nil, log
		}
	}
	w.requeues.forget(key)
	return Ack, nil, log
}

func (w *Worker) stopSandbox(ctx context.Context, sb Sandbox, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	t := time.Now()
	if err := sb.Stop(ctx); err != nil {
		log.Warn("stop sandbox", "err", err)
	}
	log.Debug("sandbox stopped", "teardown_us", time.Since(t).Microseconds())
}
