// Package queue is codebench's RabbitMQ topology and its use through
// amqp091-go: the jobs queue (or the API's exchange), per-job status queues,
// the jobs.dead queue, and publishes that wait for the broker's confirm.
//
// amqp091-go channels must not be shared across goroutines without care: each
// channel here has one owner or a mutex that says what it guards.
package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
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

// ErrNotConfirmed means the broker nacked a publish or the channel closed
// before confirming it.
var ErrNotConfirmed = errors.New("queue: publish not confirmed by the broker")

// Config says where and how.
type Config struct {
	URL           string
	Topology      string
	Prefetch      int
	StatusExpires time.Duration
	// Quorum declares "jobs" as a quorum queue whose messages go to
	// jobs.dead after DeliveryLimit redeliveries: a job that kills workers
	// again and again stops looping. A queue cannot change type: an
	// existing classic "jobs" must be deleted (when empty) first.
	Quorum        bool
	DeliveryLimit int
}

// Conn is one AMQP connection with a publishing channel in confirm mode.
type Conn struct {
	cfg  Config
	conn *amqp.Connection

	pubMu sync.Mutex // guards pub: publishes are serialised, confirms awaited outside
	pub   *amqp.Channel

	consMu sync.Mutex // guards cons: acks come from many job goroutines
	cons   *amqp.Channel
	tag    string
}

// StatusQueue names a job's status queue.
func StatusQueue(id string) string { return StatusPrefix + id }

// Dial connects and declares the topology.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Topology == "" {
		cfg.Topology = TopologySeed
	}
	conn, err := amqp.DialConfig(cfg.URL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "codebench"},
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dial: %w", err)
	}
	c := &Conn{cfg: cfg, conn: conn}
	if err := c.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) setup() error {
	ch, err := c.conn.Channel()
	if err != nil {
		return fmt.Errorf("queue: channel: %w", err)
	}
	if _, err := ch.QueueDeclare(DeadQueue, true, false, false, false, nil); err != nil {
		return fmt.Errorf("queue: declare %s: %w", DeadQueue, err)
	}
	var jobArgs amqp.Table
	if c.cfg.Quorum {
		jobArgs = amqp.Table{
			"x-queue-type":              "quorum",
			"x-delivery-limit":          int64(max(c.cfg.DeliveryLimit, 1)),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": DeadQueue,
		}
	}
	if _, err := ch.QueueDeclare(JobsQueue, true, false, false, false, jobArgs); err != nil {
		return fmt.Errorf("queue: declare %s (quorum=%v; a queue cannot change type, delete it when empty): %w", JobsQueue, c.cfg.Quorum, err)
	}
	if c.cfg.Topology == TopologyAPI {
		if err := ch.ExchangeDeclare(APIExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			return fmt.Errorf("queue: declare exchange %s: %w", APIExchange, err)
		}
		if err := ch.QueueBind(JobsQueue, APIRoutingKey, APIExchange, false, nil); err != nil {
			return fmt.Errorf("queue: bind %s: %w", JobsQueue, err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("queue: confirm mode: %w", err)
	}
	c.pub = ch
	return nil
}

// Closed delivers why the connection was lost (nil for a clean close), then
// is closed.
func (c *Conn) Closed() <-chan error {
	in := c.conn.NotifyClose(make(chan *amqp.Error, 1))
	out := make(chan error, 1)
	// Owned by the connection: amqp091 closes in when the connection ends.
	go func() {
		defer close(out)
		if e, ok := <-in; ok && e != nil {
			out <- e
		}
	}()
	return out
}

// Close closes the connection; unacked deliveries go back to the queue.
func (c *Conn) Close() error {
	if c.conn.IsClosed() {
		return nil
	}
	return c.conn.Close()
}

// Delivery is one job message.
type Delivery struct {
	Body        []byte
	Redelivered bool
	// PublishedAt is the producer's PublishedHeader, zero when absent.
	PublishedAt time.Time
	// Acker settles the delivery: the consuming channel for deliveries
	// from Consume, a fake in tests.
	Acker Acker
}

// Acker settles a delivery.
type Acker interface {
	// Ack acknowledges it: the job is done with.
	Ack() error
	// Nack returns it to the queue (requeue) or lets the broker drop or
	// dead-letter it.
	Nack(requeue bool) error
}

// Ack acknowledges the delivery.
func (d Delivery) Ack() error { return d.Acker.Ack() }

// Nack returns the delivery to the queue or drops it.
func (d Delivery) Nack(requeue bool) error { return d.Acker.Nack(requeue) }

// consAck settles one delivery on the consuming channel.
type consAck struct {
	c   *Conn
	tag uint64
}

func (a consAck) Ack() error {
	a.c.consMu.Lock()
	defer a.c.consMu.Unlock()
	return a.c.cons.Ack(a.tag, false)
}

func (a consAck) Nack(requeue bool) error {
	a.c.consMu.Lock()
	defer a.c.consMu.Unlock()
	return a.c.cons.Nack(a.tag, false, requeue)
}

// Consume starts consuming the jobs queue with manual acks and the configured
// prefetch. The returned channel closes when the consumer is cancelled or the
// connection is lost.
func (c *Conn) Consume() (<-chan Delivery, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("queue: consume channel: %w", err)
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("queue: qos: %w", err)
	}
	c.tag = fmt.Sprintf("codebench-%d", time.Now().UnixNano())
	msgs, err := ch.Consume(JobsQueue, c.tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("queue: consume: %w", err)
	}
	c.cons = ch
	out := make(chan Delivery)
	// Owned by the connection: it ends when msgs closes (cancel or close).
	go func() {
		defer close(out)
		for m := range msgs {
			d := Delivery{Body: m.Body, Redelivered: m.Redelivered, Acker: consAck{c, m.DeliveryTag}}
			if ns, ok := m.Headers[PublishedHeader].(int64); ok && ns > 0 {
				d.PublishedAt = time.Unix(0, ns)
			}
			out <- d
		}
	}()
	return out, nil
}

// StopConsuming cancels the consumer: no new deliveries; unacked ones stay
// ours until acked, nacked or the connection closes.
func (c *Conn) StopConsuming() error {
	c.consMu.Lock()
	defer c.consMu.Unlock()
	if c.cons == nil {
		return nil
	}
	return c.cons.Cancel(c.tag, false)
}

// DeclareStatusQueue declares job_status_<id> (durable, x-expires). It uses a
// channel of its own: if the queue already exists with other arguments the
// broker closes that channel, and publishing must not suffer for it.
func (c *Conn) DeclareStatusQueue(id string) error {
	ch, err := c.conn.Channel()
	if err != nil {
		return fmt.Errorf("queue: channel: %w", err)
	}
	defer ch.Close()
	var args amqp.Table
	if c.cfg.StatusExpires > 0 {
		args = amqp.Table{"x-expires": int64(c.cfg.StatusExpires / time.Millisecond)}
	}
	_, err = ch.QueueDeclare(StatusQueue(id), true, false, false, false, args)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
		return nil // exists with other arguments: still a queue we can publish to
	}
	if err != nil {
		return fmt.Errorf("queue: declare %s: %w", StatusQueue(id), err)
	}
	return nil
}

// PublishStatus publishes one status to the job's queue and waits for the
// broker's confirm.
func (c *Conn) PublishStatus(ctx context.Context, id string, body []byte) error {
	return c.publish(ctx, "", StatusQueue(id), body, nil)
}

// DeadLetter publishes an undeliverable job to jobs.dead with the reason.
func (c *Conn) DeadLetter(ctx context.Context, body []byte, reason string) error {
	return c.publish(ctx, "", DeadQueue, body, amqp.Table{ReasonHeader: reason})
}

// PublishJob publishes a job the way the configured topology expects.
func (c *Conn) PublishJob(ctx context.Context, body []byte) error {
	h := amqp.Table{PublishedHeader: time.Now().UnixNano()}
	if c.cfg.Topology == TopologyAPI {
		return c.publish(ctx, APIExchange, APIRoutingKey, body, h)
	}
	return c.publish(ctx, "", JobsQueue, body, h)
}

func (c *Conn) publish(ctx context.Context, exchange, key string, body []byte, headers amqp.Table) error {
	c.pubMu.Lock()
	dc, err := c.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    time.Now(),
		Headers:      headers,
		Body:         body,
	})
	c.pubMu.Unlock()
	if err != nil {
		return fmt.Errorf("queue: publish to %s: %w", key, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("queue: confirm of %s: %w", key, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotConfirmed, key)
	}
	return nil
}

// Follow consumes a job's status queue (auto-ack), delivering bodies until
// ctx ends. Used by "codebench submit --watch" and tests.
func (c *Conn) Follow(ctx context.Context, id string) (<-chan []byte, error) {
	if err := c.DeclareStatusQueue(id); err != nil {
		return nil, err
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, err
	}
	// Plain Consume: the context variant sends basic.cancel when ctx ends,
	// which races the channel close below into a connection error.
	msgs, err := ch.Consume(StatusQueue(id), "", true, false, false, false, nil)
	if err != nil {
		ch.Close()
		return nil, err
	}
	out := make(chan []byte)
	go func() {
		defer close(out)
		defer ch.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- m.Body:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Get fetches up to n messages from a queue without waiting (basic.get,
// auto-ack): how tests and the demo read a status queue like the seed's
// rabbitmqadmin get.
func (c *Conn) Get(queue string, n int) ([]amqp.Delivery, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	var out []amqp.Delivery
	for len(out) < n {
		m, ok, err := ch.Get(queue, true)
		if err != nil {
			return out, err
		}
		if !ok {
			break
		}
		out = append(out, m)
	}
	return out, nil
}

// Purge empties a queue (tests).
func (c *Conn) Purge(queue string) error {
	ch, err := c.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueuePurge(queue, false)
	return err
}

// Delete deletes a queue (tests).
func (c *Conn) Delete(queue string) error {
	ch, err := c.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDelete(queue, false, false, false)
	return err
}
