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
	"time"

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
}

// Publisher is what handling one job needs of the broker. Every publish
// waits for the broker's confirm.
type Publisher interface {
	DeclareStatusQueue(id string) error
	PublishStatus(ctx context.Context, id string, body []byte) error
	DeadLetter(ctx context.Context, body []byte, reason string) error
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
	// Requeue: it could not be finished here; back to the queue, to run
	// again (here or on another worker).
	Requeue
)

func (o Outcome) String() string {
	if o == Ack {
		return "ack"
	}
	return "requeue"
}

// Worker consumes jobs.
type Worker struct {
	cfg    Config
	policy job.Policy
	pool   Pool
	dial   Dial
	log    *slog.Logger

	abortOnce sync.Once
	abort     chan struct{} // closed by Abort: skip the grace period
}

// New wires a worker.
func New(cfg Config, policy job.Policy, p Pool, dial Dial, log *slog.Logger) *Worker {
	return &Worker{cfg: cfg, policy: policy, pool: p, dial: dial, log: log, abort: make(chan struct{})}
}

// Abort ends the grace period of a shutdown in progress (a second signal).
func (w *Worker) Abort() { w.abortOnce.Do(func() { close(w.abort) }) }

var errConnLost = errors.New("worker: broker connection lost")

// Run serves until ctx is cancelled, reconnecting to the broker with
// exponential backoff and jitter. On cancellation it stops consuming, lets
// in-flight jobs finish within the grace period (the rest are requeued) and
// returns nil.
func (w *Worker) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
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
			case <-time.After(d):
			}
			backoff = min(backoff*2, w.cfg.ReconnectMax)
			continue
		}
		backoff = 200 * time.Millisecond
		w.log.Info("connected to broker; consuming", "queue", queue.JobsQueue, "prefetch", w.cfg.Concurrency)
		err = w.serve(ctx, sess)
		_ = sess.Close()
		if ctx.Err() != nil {
			return nil
		}
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
	settle(d, o, log)
	if sb != nil {
		w.stopSandbox(ctx, sb, log)
	}
}

// settle is the one place a delivery is acked or requeued.
func settle(d queue.Delivery, o Outcome, log *slog.Logger) {
	var err error
	switch o {
	case Ack:
		err = d.Ack()
	case Requeue:
		err = d.Nack(true)
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
	j, err := job.Decode(d.Body, w.policy)
	if err != nil {
		return w.reject(ctx, pub, d.Body, err)
	}
	log := w.log.With("job_id", j.ID, "language", j.Language, "redelivered", d.Redelivered)
	log.Info("job received")
	var tm job.Timings
	if !d.PublishedAt.IsZero() {
		tm.QueueWaitUS = max(start.Sub(d.PublishedAt).Microseconds(), 0)
	}
	if err := pub.DeclareStatusQueue(j.ID); err != nil {
		return requeue(log, "declare status queue", err), nil, log
	}
	t := time.Now()
	if err := w.publish(ctx, pub, job.Progress(j.ID, job.StatusReceived)); err != nil {
		return requeue(log, "publish received", err), nil, log
	}
	tm.PublishUS = time.Since(t).Microseconds()

	t = time.Now()
	takeCtx, cancel := context.WithTimeout(ctx, w.cfg.PoolWait)
	sb, err := w.pool.Take(takeCtx)
	cancel()
	tm.PoolWaitUS = time.Since(t).Microseconds()
	if err != nil {
		if ctx.Err() != nil {
			return requeue(log, "shutting down", err), nil, log
		}
		st := job.Internal(j.ID, fmt.Sprintf("no sandbox became available within %s", w.cfg.PoolWait), err)
		return w.finish(ctx, pub, st, tm, start, log), nil, log
	}
	log = log.With("vm_id", sb.ID())

	t = time.Now()
	if err := w.publish(ctx, pub, job.Progress(j.ID, job.StatusRunning)); err != nil {
		return requeue(log, "publish running", err), sb, log
	}
	tm.PublishUS += time.Since(t).Microseconds()
	st := execute.Job(ctx, w.policy, sb, j)
	if ctx.Err() != nil {
		return requeue(log, "cancelled while running", ctx.Err()), sb, log
	}
	return w.finish(ctx, pub, st, tm, start, log), sb, log
}

func requeue(log *slog.Logger, why string, err error) Outcome {
	log.Warn("job requeued", "why", why, "err", err)
	return Requeue
}

// finish publishes the final status with the host's timings added to the
// sandbox's; a status that is not confirmed means the job goes back to the
// queue, to be run again.
func (w *Worker) finish(ctx context.Context, pub Publisher, st *job.Status, tm job.Timings, start time.Time, log *slog.Logger) Outcome {
	if a := st.Timings; a != nil {
		tm.AgentUS, tm.DispatchUS, tm.CompileUS, tm.RunUS, tm.GuestUS = a.AgentUS, a.DispatchUS, a.CompileUS, a.RunUS, a.GuestUS
	}
	tm.TotalUS = time.Since(start).Microseconds()
	st.Timings = &tm
	t := time.Now()
	if err := w.publish(ctx, pub, st); err != nil {
		return requeue(log, "final status not confirmed", err)
	}
	log.Info("job finished", "status", st.Status, "verdict", st.Verdict, "message", st.Message,
		"queue_wait_us", tm.QueueWaitUS, "pool_wait_us", tm.PoolWaitUS, "publish_us", tm.PublishUS,
		"dispatch_us", tm.DispatchUS, "compile_us", tm.CompileUS, "run_us", tm.RunUS, "guest_us", tm.GuestUS,
		"total_us", tm.TotalUS, "final_publish_us", time.Since(t).Microseconds())
	return Ack
}

func (w *Worker) publish(ctx context.Context, pub Publisher, st *job.Status) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return pub.PublishStatus(ctx, st.ID, st.Marshal())
}

// reject answers an invalid job: a failed/invalid_job status where the id is
// usable, and the message to jobs.dead with the reason where the body could
// not be decoded or has no usable id. Either way it is acked once reported:
// retrying cannot make it valid.
func (w *Worker) reject(ctx context.Context, pub Publisher, body []byte, err error) (Outcome, Sandbox, *slog.Logger) {
	var inv *job.InvalidError
	if !errors.As(err, &inv) {
		inv = &job.InvalidError{Reason: err.Error()}
	}
	log := w.log.With("job_id", inv.ID)
	log.Warn("invalid job", "reason", inv.Reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if inv.ID == "" || inv.Malformed {
		if err := pub.DeadLetter(ctx, body, inv.Reason); err != nil {
			return requeue(log, "could not dead-letter an invalid job", err), nil, log
		}
	}
	if inv.ID != "" {
		err := pub.DeclareStatusQueue(inv.ID)
		if err == nil {
			err = pub.PublishStatus(ctx, inv.ID, job.Invalid(inv.ID, inv.Reason).Marshal())
		}
		if err != nil {
			return requeue(log, "could not report an invalid job", err), nil, log
		}
	}
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
