// Package queue is what codebench's queues are, whatever carries them:
// the names on the broker, a delivered job (Delivery) and a consumed status
// (Message), the reply-to policy, and the errors a broker's client reports.
// internal/broker is the RabbitMQ client (amqp091-go) that implements them;
// the worker needs only this package.
package queue

import (
	"errors"
	"fmt"
	"time"
)

// Names on the broker. The seed's demo relies on JobsQueue and StatusPrefix.
const (
	JobsQueue     = "jobs"
	DeadQueue     = "jobs.dead"
	APIExchange   = "jobs_ex"
	APIRoutingKey = "jobs_rk"
	StatusPrefix  = "job_status_"
	ReasonHeader  = "x-codebench-reason"
	// PublishedHeader carries the producer's publish time (Unix ns), so the
	// worker can report queue wait; AMQP's own timestamp has 1 s resolution.
	PublishedHeader = "x-codebench-published-ns"
)

// Topologies.
const (
	TopologySeed = "seed" // default exchange, routing key "jobs"
	TopologyAPI  = "api"  // exchange jobs_ex, routing key jobs_rk, bound to jobs
)

// Errors callers match with errors.Is.
var (
	// ErrNotConfirmed means the broker nacked a publish or the channel
	// closed before confirming it.
	ErrNotConfirmed = errors.New("queue: publish not confirmed by the broker")
	// ErrTooLarge means the broker refused a message over its maximum
	// message size; MaxMessageSize then reports the limit it gave.
	ErrTooLarge = errors.New("queue: message larger than the broker accepts")
	// ErrRefused means the broker, still connected, refused a publish: a
	// nack (a queue full with x-overflow reject-publish, say) or a channel
	// error. Publishing the same message again will not help (ErrTooLarge
	// is a refusal of its own kind: fitted smaller, it may pass).
	ErrRefused = errors.New("queue: publish refused by the broker")
	// ErrConnLost means the connection went away before the broker
	// confirmed a publish: it may succeed on another connection.
	ErrConnLost = errors.New("queue: broker connection lost")
	// ErrReplyTo means a job's reply_to names a queue statuses must not go to.
	ErrReplyTo = errors.New("reply_to not allowed")
)

// AppID is the app_id of everything codebench publishes; with user_id (the
// connection's own user, which RabbitMQ checks) a consumer can tell a
// worker's status from one a producer wrote.
const AppID = "codebench"

// StatusQueue names a job's status queue.
func StatusQueue(id string) string { return StatusPrefix + id }

// Delivery is one job message.
type Delivery struct {
	Body        []byte
	Redelivered bool
	// PublishedAt is the producer's PublishedHeader, zero when absent.
	PublishedAt time.Time
	// ReplyTo and CorrelationID are the AMQP properties of RabbitMQ's
	// request/reply convention: statuses also go to ReplyTo, carrying
	// CorrelationID.
	ReplyTo, CorrelationID string
	// UserID and AppID are the publisher's, as the broker delivered them
	// (it refuses a user_id that is not the publishing connection's).
	UserID, AppID string
	// Acker settles the delivery: the consuming channel for deliveries
	// from Consume, a fake in tests.
	Acker Acker
}

// Acker settles a delivery.
type Acker interface {
	// Ack acknowledges it: the job is done with.
	Ack() error
	// Nack returns it to the queue (requeue) or lets the broker drop or
	// dead-letter it. A quorum queue's delivery limit does not count a
	// nack's requeue: for a return that is not the job's fault.
	Nack(requeue bool) error
	// Reject is Nack for a failure that a quorum queue's delivery limit
	// should count (basic.reject).
	Reject(requeue bool) error
}

// Ack acknowledges the delivery.
func (d Delivery) Ack() error { return d.Acker.Ack() }

// Nack returns the delivery to the queue or drops it.
func (d Delivery) Nack(requeue bool) error { return d.Acker.Nack(requeue) }

// Reject returns the delivery to the queue, counted as a failed delivery.
func (d Delivery) Reject(requeue bool) error { return d.Acker.Reject(requeue) }

// Message is a status as a consumer sees it: the body, and the properties
// that say who published it.
type Message struct {
	Body          []byte
	UserID, AppID string
}

// FromWorker returns nil when the message is a status of job id (its body
// says statusID) published by workerUser with codebench's app_id, else why
// not. RabbitMQ refuses a user_id that is not the publishing connection's
// own, so a producer cannot forge the worker's.
func (m Message) FromWorker(workerUser, id, statusID string) error {
	switch {
	case m.UserID != workerUser:
		return fmt.Errorf("user_id %q is not the workers' user %q", m.UserID, workerUser)
	case m.AppID != AppID:
		return fmt.Errorf("app_id %q is not %q", m.AppID, AppID)
	case statusID != id:
		return fmt.Errorf("it is a status of job %q, not of %q", statusID, id)
	}
	return nil
}
