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
	"sync"
	"sync/atomic"
	"time"

	"github.com/codebench/codebench/internal/backoff"
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
	pace := backoff.New(initialBackoff, w.cfg.ReconnectMax, w.cfg.After)
	lost := false
	for {
		sess, err := w.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d := pace.Next()
			w.log.Warn("broker unreachable, retrying", "err", err, "in", d.Round(time.Millisecond))
			if !pace.Wait(ctx, d) {
				return nil
			}
			continue
		}
		pace.Reset()
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

// refused reports whether the broker, still connected, refused a publish:
// trying again will not help.
func refused(err error) bool {
	return errors.Is(err, queue.ErrRefused) || errors.Is(err, queue.ErrTooLarge)
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
