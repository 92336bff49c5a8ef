package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
)

// delivery is one job message on its way through the worker, with
// everything its handling carries: where its statuses go, its log, its
// timings (one struct from its receipt to its final status) and the
// sandbox it ran on.
type delivery struct {
	w     *Worker
	pub   Publisher
	msg   queue.Delivery
	start time.Time
	rt    route
	rtErr error // why the message's reply_to was refused, if it was
	log   *slog.Logger
	// id and lang are the job's, once decoded.
	id, lang string
	tm       job.Timings
	// sb is the sandbox the job ran on (nil: none), stopped after the
	// delivery is settled.
	sb Sandbox
	// secret is the job's reply secret (job.Job.ReplySecret), put on
	// every status: read from the body before it is decoded, so that an
	// invalid job's status carries it too.
	secret string
}

func (w *Worker) newDelivery(pub Publisher, msg queue.Delivery) *delivery {
	rt, rtErr := w.routeOf(msg)
	return &delivery{w: w, pub: pub, msg: msg, start: time.Now(), rt: rt, rtErr: rtErr, log: w.log,
		secret: job.SalvageReplySecret(msg.Body)}
}

// process runs one delivery to its end: handle decides, the delivery is
// settled, and only then is the job's sandbox stopped (its teardown is not
// on the job's path).
func (w *Worker) process(ctx context.Context, pub Publisher, msg queue.Delivery) {
	dl := w.newDelivery(pub, msg)
	o := dl.handle(ctx)
	if o == Retry && ctx.Err() != nil {
		o = Requeue // a shutdown is not the job's fault
	}
	settle(msg, o, dl.log)
	if dl.sb != nil {
		dl.stopSandbox(ctx)
	}
}

// handle runs the job and decides the delivery's outcome.
func (dl *delivery) handle(ctx context.Context) Outcome {
	w := dl.w
	j, err := job.Decode(dl.msg.Body, w.policy)
	if err == nil && dl.rtErr != nil {
		err = &job.InvalidError{ID: j.ID, Reason: dl.rtErr.Error()}
	}
	if err == nil && j.Network && w.cfg.Networked == nil {
		// The policy allowed what this worker cannot give: a wiring bug,
		// reported as the job's invalidity rather than run unnetworked.
		err = &job.InvalidError{ID: j.ID, Reason: "network access is not enabled on this worker"}
	}
	if err != nil {
		return dl.reject(ctx, err)
	}
	dl.id, dl.lang = j.ID, j.Language
	dl.log = w.log.With("job_id", j.ID, "language", j.Language, "redelivered", dl.msg.Redelivered)
	dl.log.Info("job received")
	if !dl.msg.PublishedAt.IsZero() {
		dl.tm.QueueWaitUS = max(dl.start.Sub(dl.msg.PublishedAt).Microseconds(), 0)
	}
	if dl.rt.statusQueue {
		if err := dl.pub.DeclareStatusQueue(j.ID); err != nil {
			return dl.requeue(ctx, "declare status queue", err)
		}
	}
	t := time.Now()
	if err := dl.publish(ctx, job.Progress(j.ID, job.StatusReceived)); err != nil {
		return dl.requeue(ctx, "publish received", err)
	}
	dl.tm.PublishUS = time.Since(t).Microseconds()

	t = time.Now()
	takeCtx, cancel := context.WithTimeout(ctx, w.cfg.PoolWait)
	pool := w.pool
	if j.Network {
		pool = w.cfg.Networked
	}
	sb, err := pool.Take(takeCtx)
	cancel()
	dl.tm.PoolWaitUS = time.Since(t).Microseconds()
	if err != nil {
		if ctx.Err() != nil {
			return dl.requeued("shutting down", err)
		}
		return dl.end(ctx, job.Internal(j.ID, fmt.Sprintf("no sandbox became available within %s", w.cfg.PoolWait), err))
	}
	dl.sb = sb
	dl.log = dl.log.With("vm_id", sb.ID())

	t = time.Now()
	if err := dl.publish(ctx, job.Progress(j.ID, job.StatusRunning)); err != nil {
		return dl.requeue(ctx, "publish running", err)
	}
	dl.tm.PublishUS += time.Since(t).Microseconds()
	var progress func(agentproto.Output)
	var streamed func()
	if j.Stream {
		progress, streamed = dl.streamOutput(ctx, j.ID)
	}
	st := execute.Job(ctx, w.policy, sb, j, progress)
	if streamed != nil {
		streamed() // every output status goes before the final one
	}
	if ctx.Err() != nil {
		return dl.requeued("cancelled while running", ctx.Err())
	}
	return dl.end(ctx, st)
}

// end publishes the job's final status: acked once confirmed, requeued (or
// dead-lettered, if the broker refused it) when not.
func (dl *delivery) end(ctx context.Context, st *job.Status) Outcome {
	if err := dl.finish(ctx, st); err != nil {
		return dl.requeue(ctx, "final status not confirmed", err)
	}
	return Ack
}

// requeue is the way out for a job that could not be finished here. A
// status the broker refused (while connected) ends the job at once: it is
// dead-lettered with the reason and acked, since publishing again will not
// help. Otherwise a job requeued MaxRequeues times by this worker is ended
// with internal_error (the cause is likely the job itself): its final
// status is published by finish, never by requeue again. A worker
// shutting down always requeues.
func (dl *delivery) requeue(ctx context.Context, why string, err error) Outcome {
	w := dl.w
	if ctx.Err() != nil {
		return dl.requeued(why, err)
	}
	if refused(err) {
		dl.tellRefused(ctx, why, err)
		return dl.deadLetter(ctx, fmt.Sprintf("job %s: the broker refused its status (%s): %v", dl.id, why, err))
	}
	key := requeueKey(dl.id, dl.msg.Body)
	n := w.requeues.add(key)
	if n <= w.cfg.MaxRequeues {
		dl.requeued(why, err)
		return Retry
	}
	dl.log.Error("job requeued too often by this worker; ending it", "requeues", n-1, "why", why, "err", err)
	st := job.Internal(dl.id, fmt.Sprintf("this worker could not finish the job %d times (the last time: %s)", n-1, why), err)
	if err := dl.finish(ctx, st); err != nil {
		if refused(err) {
			dl.tellRefused(ctx, "final status", err)
			return dl.deadLetter(ctx, fmt.Sprintf("job %s: the broker refused its final status: %v", dl.id, err))
		}
		// Not even this status could be published: the broker is
		// unreachable and the job is requeued, not lost.
		return dl.requeued("final status not confirmed", err)
	}
	w.requeues.forget(key)
	return Ack
}

// finish publishes the final status with the guest's timings taken into
// the delivery's own; it returns why the status was not confirmed.
func (dl *delivery) finish(ctx context.Context, st *job.Status) error {
	dl.tm.AddGuest(st.Timings)
	dl.tm.TotalUS = time.Since(dl.start).Microseconds()
	st.Timings = &dl.tm
	t := time.Now()
	if err := dl.publish(ctx, st); err != nil {
		dl.log.Warn("final status not confirmed", "err", err)
		return err
	}
	tm := dl.tm
	dl.w.obs.JobFinished(dl.lang, st.Status, st.Verdict, tm)
	dl.log.Info("job finished", "status", st.Status, "verdict", st.Verdict, "message", st.Message,
		"queue_wait_us", tm.QueueWaitUS, "pool_wait_us", tm.PoolWaitUS, "publish_us", tm.PublishUS,
		"dispatch_us", tm.DispatchUS, "compile_us", tm.CompileUS, "run_us", tm.RunUS, "guest_us", tm.GuestUS,
		"total_us", tm.TotalUS, "final_publish_us", time.Since(t).Microseconds())
	return nil
}

// tellRefused gives a requester that waits on a reply queue a final
// status when the broker refused one of the job's statuses (the job is
// then dead-lettered): a small internal_error, to the reply route alone,
// so that its producer (the HTTP API) is not left waiting for a final
// that never comes. Best effort: the dead letter has the reason either
// way.
func (dl *delivery) tellRefused(ctx context.Context, why string, err error) {
	if dl.rt.replyTo == "" || dl.id == "" {
		return
	}
	st := job.Internal(dl.id, fmt.Sprintf("the broker refused this job's status (%s); the job was dead-lettered", why), err)
	st.Stdout, st.Stderr = "", ""
	if perr := dl.publishTo(ctx, route{replyTo: dl.rt.replyTo, correlationID: dl.rt.correlationID}, st); perr != nil {
		dl.log.Warn("the requester could not be told its status was refused", "err", perr)
	}
}

// publish publishes one of the job's statuses by its route.
func (dl *delivery) publish(ctx context.Context, st *job.Status) error {
	return dl.publishTo(ctx, dl.rt, st)
}

// deadLetter ends a job whose statuses cannot be delivered: the job goes to
// jobs.dead with the reason and is acked. If even that is refused, the job
// is rejected (the broker drops it, or dead-letters it where the queue has
// a dead-letter exchange); if the connection is gone, it is requeued.
func (dl *delivery) deadLetter(ctx context.Context, reason string) Outcome {
	w := dl.w
	ctx, cancel := cleanup.Detached(ctx, cleanup.DefaultBound)
	defer cancel()
	dl.log.Error("job ended: dead-lettered", "reason", reason)
	err := dl.pub.DeadLetter(ctx, dl.msg.Body, reason)
	switch {
	case err == nil:
		w.obs.DeadLettered()
		return Ack
	case refused(err):
		dl.log.Error("dead-lettering refused too; rejecting the job", "err", err)
		w.obs.DeadLettered()
		return Reject
	}
	return dl.requeued("could not dead-letter a job whose status was refused", err)
}

// reject answers an invalid job: a failed/invalid_job status where the id
// is usable, and the message to jobs.dead with the reason where the body
// could not be decoded or has no usable id. An invalid job costs the broker
// nothing lasting: its status goes to its reply_to, or to its status queue
// only where that exists already (a producer that follows its job declared
// it), never to a queue made for it. Either way it is acked once reported:
// retrying cannot make it valid.
func (dl *delivery) reject(ctx context.Context, err error) Outcome {
	w, pub, rt, body := dl.w, dl.pub, dl.rt, dl.msg.Body
	var inv *job.InvalidError
	if !errors.As(err, &inv) {
		inv = &job.InvalidError{Reason: err.Error()}
	}
	dl.log = w.log.With("job_id", inv.ID)
	log := dl.log
	log.Warn("invalid job", "reason", inv.Reason) // bounded by job.Decode
	w.obs.JobFinished("", job.StatusFailed, job.VerdictInvalidJob, job.Timings{})
	ctx, cancel := cleanup.Detached(ctx, cleanup.DefaultBound)
	defer cancel()
	key := requeueKey(inv.ID, body)
	if inv.ID == "" && rt.replyTo != "" {
		// The requester hears back even without an id (best effort: the
		// message is dead-lettered below either way).
		_ = dl.publishTo(ctx, route{replyTo: rt.replyTo, correlationID: rt.correlationID}, job.Invalid("", inv.Reason))
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
				return Reject
			}
			return dl.requeued("could not dead-letter an invalid job", err)
		}
	}
	if inv.ID != "" {
		dest := rt
		var err error
		if dest.statusQueue {
			dest.statusQueue, err = pub.StatusQueueExists(inv.ID)
		}
		if err == nil && (dest.statusQueue || dest.replyTo != "") {
			err = dl.publishTo(ctx, dest, job.Invalid(inv.ID, inv.Reason))
		}
		switch {
		case err == nil:
		case refused(err):
			log.Warn("the broker refused an invalid job's status; acking it", "err", err)
		case w.requeues.add(key) > w.cfg.MaxRequeues:
			log.Error("invalid job could not be reported, again; acking it (it was dead-lettered if malformed)", "err", err)
		default:
			return dl.requeued("could not report an invalid job", err)
		}
	}
	w.requeues.forget(key)
	return Ack
}

// routeOf is where a delivery's statuses go. A reply_to the policy refuses
// is dropped from the route (the job's status queue is used instead) and
// the error says why.
func (w *Worker) routeOf(d queue.Delivery) (route, error) {
	if err := w.cfg.ReplyTo.CheckFrom(d.ReplyTo, d.UserID); err != nil {
		return route{statusQueue: true}, err
	}
	// A reply queue of the API's gets the statuses alone: the API stores
	// them, and a status queue would only show its tokens to anyone who
	// lists queues, and keep a copy of every status nobody reads.
	statusQueue := d.ReplyTo == "" || (w.cfg.StatusQueueWithReply && !queue.IsAPIReply(d.ReplyTo))
	return route{statusQueue: statusQueue, replyTo: d.ReplyTo, correlationID: d.CorrelationID}, nil
}

// requeued requeues the delivery: a shutdown, or a failure this worker
// may not have again.
func (dl *delivery) requeued(why string, err error) Outcome {
	dl.log.Warn("job requeued", "why", why, "err", err)
	dl.w.obs.JobRequeued(why)
	return Requeue
}

// publishTo publishes one status where rt says, fitted to the status size
// limit; when the broker refuses it as too large (its real limit was lower
// than we knew), it is fitted to the limit the broker gave and published
// once more. It is not cancelled with the job: a status is bounded by
// cleanup.DefaultBound.
func (dl *delivery) publishTo(ctx context.Context, rt route, st *job.Status) error {
	ctx, cancel := cleanup.Detached(ctx, cleanup.DefaultBound)
	defer cancel()
	pub := dl.pub
	st.ReplySecret = dl.secret
	// The reply first: it is the route the producer chose (the HTTP API
	// waits on it); the status queue, kept for followers of the seed's
	// protocol, gets the same status once the broker confirmed the reply.
	send := func(body []byte) error {
		if rt.replyTo != "" {
			if err := pub.PublishReply(ctx, rt.replyTo, rt.correlationID, body); err != nil {
				return err
			}
		}
		if rt.statusQueue {
			return pub.PublishStatus(ctx, st.ID, body)
		}
		return nil
	}
	var err error
	for range 2 {
		limit := dl.statusLimit()
		body := st.Marshal()
		if len(body) > limit && st.Fit(limit) {
			before := len(body)
			body = st.Marshal()
			dl.w.obs.StatusTrimmed(before - len(body))
			dl.log.Warn("status trimmed to fit", "job_id", st.ID, "limit", limit, "bytes", before, "trimmed_to", len(body))
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
func (dl *delivery) streamOutput(ctx context.Context, id string) (progress func(agentproto.Output), done func()) {
	log := dl.log
	ch := make(chan agentproto.Output, 64)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for o := range ch {
			if err := dl.publishTo(ctx, dl.rt, job.Output(id, o.Seq, o.Stdout, o.Stderr)); err != nil {
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
func (dl *delivery) statusLimit() int {
	return min(dl.w.cfg.MaxStatusBytes, dl.pub.MaxMessageSize()-statusHeadroom)
}

// stopSandbox stops the job's sandbox, once the delivery is settled,
// bounded by cleanup.DefaultBound whatever became of the job.
func (dl *delivery) stopSandbox(ctx context.Context) {
	ctx, cancel := cleanup.Detached(ctx, cleanup.DefaultBound)
	defer cancel()
	t := time.Now()
	if err := dl.sb.Stop(ctx); err != nil {
		dl.log.Warn("stop sandbox", "err", err)
	}
	dl.log.Debug("sandbox stopped", "teardown_us", time.Since(t).Microseconds())
}
