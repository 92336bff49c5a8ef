// Package worker serves jobs from RabbitMQ: one job, one fresh VM from the
// warm pool, every status published and confirmed, the job acked only after
// its final status is confirmed, the VM destroyed afterwards.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/pool"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/sandbox"
)

// Config is the worker's data.
type Config struct {
	Concurrency  int
	PoolWait     time.Duration // how long a job waits for a VM
	Grace        time.Duration // how long in-flight jobs may finish on shutdown
	ReconnectMax time.Duration
	Queue        queue.Config
}

// Sandbox is a pool member: a VM whose agent answered.
type Sandbox struct {
	*sandbox.Instance
	// Ready is when the agent last answered (its handshake or identity).
	Ready time.Time
}

// freshFor is how long after its agent answered a member is handed out
// without a ping: its VMM is alive and its connection up, checked for free.
const freshFor = 5 * time.Second

// Healthy checks the member before it is handed out: the VMM has not exited,
// the agent connection is up, and the agent answers a ping unless it
// answered within freshFor (a ping is a round trip into the guest).
func (s *Sandbox) Healthy(ctx context.Context) error {
	select {
	case <-s.VM.Done():
		return sandbox.ErrVMExited
	default:
	}
	if err := s.Agent.Err(); err != nil {
		return err
	}
	if time.Since(s.Ready) < freshFor {
		return nil
	}
	return s.Agent.Ping(ctx)
}

// Destroy stops the VM.
func (s *Sandbox) Destroy(ctx context.Context) error { return s.Stop(ctx) }

// Pool is what the worker needs of the warm pool.
type Pool interface {
	Take(ctx context.Context) (*Sandbox, error)
}

var _ Pool = (*pool.Pool[*Sandbox])(nil)

// Dial opens a broker connection.
type Dial func(ctx context.Context) (*queue.Conn, error)

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
		conn, err := w.dial(ctx)
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
		err = w.serve(ctx, conn)
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("reconnecting", "err", err)
	}
}

// serve consumes on one connection until it is lost or ctx ends.
func (w *Worker) serve(ctx context.Context, conn *queue.Conn) error {
	closed := conn.NotifyClose()
	deliveries, err := conn.Consume()
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
			_ = conn.StopConsuming()
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				w.handle(jobsCtx, conn, &d)
			}()
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

// handle runs one delivery to its end: acked after a confirmed final status,
// or nacked with requeue when the job could not be finished here.
func (w *Worker) handle(ctx context.Context, conn *queue.Conn, d *queue.Delivery) {
	start := time.Now()
	j, err := job.Decode(d.Body, w.policy)
	if err != nil {
		w.reject(ctx, conn, d, err)
		return
	}
	log := w.log.With("job_id", j.ID, "language", j.Language, "redelivered", d.Redelivered)
	log.Info("job received")
	requeue := func(why string, err error) {
		log.Warn("job requeued", "why", why, "err", err)
		if err := d.Nack(true); err != nil {
			log.Warn("nack", "err", err)
		}
	}
	var tm job.Timings
	if !d.PublishedAt.IsZero() {
		tm.QueueWaitUS = max(start.Sub(d.PublishedAt).Microseconds(), 0)
	}
	if err := conn.DeclareStatusQueue(j.ID); err != nil {
		requeue("declare status queue", err)
		return
	}
	pubStart := time.Now()
	if err := w.publish(ctx, conn, job.Progress(j.ID, job.StatusReceived)); err != nil {
		requeue("publish received", err)
		return
	}
	tm.PublishUS = time.Since(pubStart).Microseconds()
	takeStart := time.Now()
	takeCtx, cancel := context.WithTimeout(ctx, w.cfg.PoolWait)
	sb, err := w.pool.Take(takeCtx)
	cancel()
	tm.PoolWaitUS = time.Since(takeStart).Microseconds()
	if err != nil {
		if ctx.Err() != nil {
			requeue("shutting down", err)
			return
		}
		st := job.Internal(j.ID, fmt.Sprintf("no sandbox became available within %s", w.cfg.PoolWait), err)
		w.finish(ctx, conn, d, st, log)
		return
	}
	log = log.With("vm_id", sb.VM.ID())
	var finalPublish time.Duration // the final status cannot carry its own publish time
	defer func() {
		t := time.Now()
		w.destroy(ctx, sb, log)
		log.Info("job timings", "queue_wait_us", tm.QueueWaitUS, "pool_wait_us", tm.PoolWaitUS, "publish_us", tm.PublishUS,
			"dispatch_us", tm.DispatchUS, "compile_us", tm.CompileUS, "run_us", tm.RunUS, "guest_us", tm.GuestUS,
			"total_us", tm.TotalUS, "final_publish_us", finalPublish.Microseconds(), "teardown_us", time.Since(t).Microseconds())
	}()
	pubStart = time.Now()
	if err := w.publish(ctx, conn, job.Progress(j.ID, job.StatusRunning)); err != nil {
		requeue("publish running", err)
		return
	}
	tm.PublishUS += time.Since(pubStart).Microseconds()
	agentStart := time.Now()
	st := w.policy.Execute(ctx, sb.Agent, j, func() string { return sb.VM.ConsoleTail(2000) })
	if ctx.Err() != nil {
		requeue("cancelled while running", ctx.Err())
		return
	}
	tm.AgentUS = time.Since(agentStart).Microseconds()
	tm.CompileUS, tm.RunUS, tm.GuestUS = st.CompileUS, st.ExecDuration, st.GuestUS
	tm.DispatchUS = max(tm.AgentUS-tm.CompileUS-tm.RunUS, 0)
	tm.TotalUS = time.Since(start).Microseconds()
	st.Timings = &tm
	t := time.Now()
	w.finish(ctx, conn, d, st, log)
	finalPublish = time.Since(t)
}

// finish publishes the final status and acks; a status that is not confirmed
// means the job goes back to the queue, to be run again.
func (w *Worker) finish(ctx context.Context, conn *queue.Conn, d *queue.Delivery, st *job.Status, log *slog.Logger) {
	if err := w.publish(ctx, conn, st); err != nil {
		log.Warn("final status not confirmed; job requeued", "err", err)
		_ = d.Nack(true)
		return
	}
	if err := d.Ack(); err != nil {
		log.Warn("ack failed; the broker will redeliver", "err", err)
		return
	}
	log.Info("job finished", "status", st.Status, "verdict", st.Verdict, "message", st.Message)
}

func (w *Worker) publish(ctx context.Context, conn *queue.Conn, st *job.Status) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return conn.PublishStatus(ctx, st.ID, st.Marshal())
}

// reject answers an invalid job: a failed/invalid_job status where the id is
// usable, otherwise the message goes to jobs.dead with the reason. Either way
// it is acked: retrying cannot make it valid.
func (w *Worker) reject(ctx context.Context, conn *queue.Conn, d *queue.Delivery, err error) {
	var inv *job.InvalidError
	if !errors.As(err, &inv) {
		inv = &job.InvalidError{Reason: err.Error()}
	}
	log := w.log.With("job_id", inv.ID)
	log.Warn("invalid job", "reason", inv.Reason)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var perr error
	if inv.ID == "" || inv.Malformed {
		perr = conn.DeadLetter(pctx, d.Body, inv.Reason)
	}
	if inv.ID != "" && perr == nil {
		perr = conn.DeclareStatusQueue(inv.ID)
		if perr == nil {
			perr = conn.PublishStatus(pctx, inv.ID, job.Invalid(inv.ID, inv.Reason).Marshal())
		}
	}
	if perr != nil {
		log.Warn("could not report invalid job; requeued", "err", perr)
		_ = d.Nack(true)
		return
	}
	_ = d.Ack()
}

func (w *Worker) destroy(ctx context.Context, sb *Sandbox, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := sb.Destroy(ctx); err != nil {
		log.Warn("destroy vm", "err", err)
	}
}
