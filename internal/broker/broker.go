// Package broker is codebench's RabbitMQ topology (internal/queue names
// it) and its use through amqp091-go: the jobs queue (or the API's exchange), per-job status queues,
// the jobs.dead queue, and publishes that wait for the broker's confirm.
//
// amqp091-go channels must not be shared across goroutines without care: each
// channel here has one owner or a mutex that says what it guards.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/queue"
)

// Config says where and how.
type Config struct {
	// URL is the broker, or a comma-separated list of a cluster's nodes:
	// Dial tries them in turn, each time from the one after the node it
	// last reached, so a worker whose node goes away moves to the next.
	// amqps:// is TLS.
	URL string
	// TLS: the CA that signed the broker's certificate (else the host's
	// roots), and a client certificate and key where the broker wants one.
	CAFile, CertFile, KeyFile string

	Topology      string
	Prefetch      int
	StatusExpires time.Duration
	// Quorum declares "jobs" as a quorum queue whose messages go to
	// jobs.dead after DeliveryLimit redeliveries: a job that kills workers
	// again and again stops looping. A queue cannot change type: an
	// existing classic "jobs" must be deleted (when empty) first.
	Quorum        bool
	DeliveryLimit int
	// Passive: the topology is looked for, not declared: a client whose
	// user may not configure codebench's queues (the API's own) dials only
	// once a worker or `codebench declare` made them.
	Passive bool
}

// replyQueueExpires is how long a durable reply queue lives unused.
const replyQueueExpires = 7 * 24 * time.Hour

// ErrNoTopology: a passive client found codebench's queues not declared.
var ErrNoTopology = errors.New("queue: the jobs queue is not declared yet (a worker or `codebench declare` declares it)")

// Conn is one AMQP connection with a publishing channel in confirm mode. A
// publishing channel the broker closes (a refused message closes it) is
// replaced on the next publish; a lost consuming channel ends Consume's
// deliveries, and the caller reconnects.
type Conn struct {
	cfg  Config
	conn *amqp.Connection
	// user is the connection's user, sent as every message's user_id.
	user string

	pubMu     sync.Mutex // guards pub, pubClosed, pubErr: publishes are serialised, confirms awaited outside
	pub       *amqp.Channel
	pubClosed chan *amqp.Error // pub's close notification
	pubErr    *amqp.Error      // why pub closed, once read from pubClosed

	// maxMessage is the broker's maximum message size as far as we know:
	// its version's default until a refusal tells the real one.
	maxMessage atomic.Int64

	consMu sync.Mutex // guards cons: acks come from many job goroutines
	cons   *amqp.Channel
	tag    string
}

// Dial connects and declares the topology.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Topology == "" {
		cfg.Topology = queue.TopologySeed
	}
	urls := splitURLs(cfg.URL)
	if len(urls) == 0 {
		return nil, errors.New("queue: no broker URL")
	}
	start := int(nextNode.Load() % uint32(len(urls)))
	var errs []error
	for i := range urls {
		n := (start + i) % len(urls)
		conn, err := dialOne(urls[n], cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", redact(urls[n]), err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		// The next dial (after this connection is lost) starts at the
		// next node.
		nextNode.Store(uint32(n + 1))
		c := &Conn{cfg: cfg, conn: conn, user: userOf(urls[n])}
		c.maxMessage.Store(defaultMaxMessage(conn.Properties))
		if err := c.declare(); err != nil {
			conn.Close()
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("queue: dial: %w", errors.Join(errs...))
}

// nextNode is the index in the URL list the next Dial starts at.
var nextNode atomic.Uint32

func splitURLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// userOf is the user a URL logs in as (amqp091's default where it names
// none).
func userOf(raw string) string {
	u, err := amqp.ParseURI(raw)
	if err != nil {
		return ""
	}
	return u.Username
}

// User is the user this connection logged in as: the user_id of its
// messages.
func (c *Conn) User() string { return c.user }

// redact drops the credentials from a URL, for errors and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable broker URL)"
	}
	u.User = nil
	return u.String()
}

func dialOne(raw string, cfg Config) (*amqp.Connection, error) {
	acfg := amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Dial:       amqp.DefaultDial(10 * time.Second),
		Properties: amqp.Table{"connection_name": "codebench"},
	}
	if strings.HasPrefix(raw, "amqps://") || cfg.CAFile != "" || cfg.CertFile != "" {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		acfg.TLSClientConfig = tc
	}
	return amqp.DialConfig(raw, acfg)
}

// tlsConfig reads the CA and the client certificate, where given.
func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("queue: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("queue: CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("queue: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// DeclareTopology connects, declares the topology and disconnects: a worker
// does it before anything slow, so that jobs published meanwhile are kept.
func DeclareTopology(ctx context.Context, cfg Config) error {
	c, err := Dial(ctx, cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

// Default maximum message sizes of RabbitMQ (rabbit.max_message_size).
const (
	maxMessage3 = 128 << 20 // 3.8 to 3.13
	maxMessage4 = 16 << 20  // 4.0 on
)

// defaultMaxMessage is the default limit of the broker's version, from the
// server properties of connection.start.
func defaultMaxMessage(props amqp.Table) int64 {
	if v, ok := props["version"].(string); ok && strings.HasPrefix(v, "3.") {
		return maxMessage3
	}
	return maxMessage4
}

// MaxMessageSize is the largest message the broker accepts, as far as this
// connection knows: the default of its version, or the limit the broker gave
// when it refused a larger one.
func (c *Conn) MaxMessageSize() int { return int(c.maxMessage.Load()) }

// declare declares the durable topology.
// declareDead declares jobs.dead: with Quorum a quorum queue, so that it
// survives a node of the cluster, unless it exists already (of either
// type: a queue cannot change type, and an existing one keeps working).
func (c *Conn) declareDead() error {
	ch, err := c.conn.Channel()
	if err != nil {
		return fmt.Errorf("queue: channel: %w", err)
	}
	defer ch.Close()
	var args amqp.Table
	if c.cfg.Quorum {
		if _, err := ch.QueueDeclarePassive(queue.DeadQueue, true, false, false, false, nil); err == nil {
			return nil
		}
		// The failed passive declare closed that channel.
		if ch, err = c.conn.Channel(); err != nil {
			return fmt.Errorf("queue: channel: %w", err)
		}
		defer ch.Close()
		args = amqp.Table{"x-queue-type": "quorum"}
	}
	if _, err := ch.QueueDeclare(queue.DeadQueue, true, false, false, false, args); err != nil {
		return fmt.Errorf("queue: declare %s: %w", queue.DeadQueue, err)
	}
	return nil
}

func (c *Conn) declare() error {
	if c.cfg.Passive {
		return c.lookForTopology()
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return fmt.Errorf("queue: channel: %w", err)
	}
	defer ch.Close()
	if err := c.declareDead(); err != nil {
		return err
	}
	var jobArgs amqp.Table
	if c.cfg.Quorum {
		jobArgs = amqp.Table{
			"x-queue-type":              "quorum",
			"x-delivery-limit":          int64(max(c.cfg.DeliveryLimit, 1)),
			"x-dead-letter-exchange":    "",
			"x-dead-letter-routing-key": queue.DeadQueue,
		}
	}
	if _, err := ch.QueueDeclare(queue.JobsQueue, true, false, false, false, jobArgs); err != nil {
		return fmt.Errorf("queue: declare %s (quorum=%v; a queue cannot change type, delete it when empty): %w", queue.JobsQueue, c.cfg.Quorum, err)
	}
	if c.cfg.Topology == queue.TopologyAPI {
		if err := ch.ExchangeDeclare(queue.APIExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
			return fmt.Errorf("queue: declare exchange %s: %w", queue.APIExchange, err)
		}
		if err := ch.QueueBind(queue.JobsQueue, queue.APIRoutingKey, queue.APIExchange, false, nil); err != nil {
			return fmt.Errorf("queue: bind %s: %w", queue.JobsQueue, err)
		}
	}
	return nil
}

// lookForTopology checks, passively (no permission needed), that the jobs
// queue, and in the API's topology its exchange, exist.
func (c *Conn) lookForTopology() error {
	for _, look := range []func(ch *amqp.Channel) error{
		func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(queue.JobsQueue, true, false, false, false, nil)
			return err
		},
		func(ch *amqp.Channel) error {
			if c.cfg.Topology != queue.TopologyAPI {
				return nil
			}
			return ch.ExchangeDeclarePassive(queue.APIExchange, amqp.ExchangeDirect, true, false, false, false, nil)
		},
	} {
		ch, err := c.conn.Channel() // a failed passive declare closes its channel
		if err != nil {
			return fmt.Errorf("queue: channel: %w", err)
		}
		err = look(ch)
		_ = ch.Close()
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return ErrNoTopology
		}
		if err != nil {
			return fmt.Errorf("queue: looking for the topology: %w", err)
		}
	}
	return nil
}

// pubChannel returns the publishing channel, opening a new one in confirm
// mode when there is none or the broker closed the last. pubMu is held.
func (c *Conn) pubChannel() (*amqp.Channel, error) {
	if c.pub != nil && !c.pub.IsClosed() {
		return c.pub, nil
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("queue: publishing channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("queue: confirm mode: %w", err)
	}
	c.pub, c.pubErr = ch, nil
	c.pubClosed = ch.NotifyClose(make(chan *amqp.Error, 1))
	return ch, nil
}

// closeReason is why ch, a publishing channel, was closed by the broker, or
// nil when it is open or closed without a reason.
func (c *Conn) closeReason(ch *amqp.Channel) *amqp.Error {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if ch != c.pub {
		return nil // a later channel: the reason went with the old one
	}
	if c.pubErr == nil {
		select {
		case e := <-c.pubClosed:
			c.pubErr = e
		case <-time.After(100 * time.Millisecond): // the close may still be on its way
		}
	}
	return c.pubErr
}

// maxSizeRE finds the limit in RabbitMQ's refusal: "message size 1048577 is
// larger than configured max size 1048576".
var maxSizeRE = regexp.MustCompile(`max size (\d+)`)

// learnLimit records the limit a refusal gives, or halves the known one when
// the refusal does not say.
func (c *Conn) learnLimit(reason string) {
	if m := maxSizeRE.FindStringSubmatch(reason); m != nil {
		if n, err := strconv.ParseInt(m[1], 10, 64); err == nil && n > 0 {
			c.maxMessage.Store(n)
			return
		}
	}
	c.maxMessage.Store(max(c.maxMessage.Load()/2, 64<<10))
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

func (a consAck) Reject(requeue bool) error {
	a.c.consMu.Lock()
	defer a.c.consMu.Unlock()
	return a.c.cons.Reject(a.tag, requeue)
}

// Consume starts consuming the jobs queue with manual acks and the configured
// prefetch. The returned channel closes when the consumer is cancelled or the
// connection is lost.
func (c *Conn) Consume() (<-chan queue.Delivery, error) {
	return c.consume(queue.JobsQueue, c.cfg.Prefetch)
}

// ConsumeDurable declares the durable queue name and consumes it like
// Consume, prefetch at once (a reply queue that outlives its consumer:
// nothing sent to it is lost while the consumer is down).
func (c *Conn) ConsumeDurable(name string, prefetch int) (<-chan queue.Delivery, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("queue: channel: %w", err)
	}
	// A queue whose consumer never comes back (an API node gone for good)
	// goes after a week unused; its submissions were adopted and ended.
	_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-expires": int64(replyQueueExpires / time.Millisecond)})
	ch.Close()
	if err != nil {
		return nil, fmt.Errorf("queue: declare %s: %w", name, err)
	}
	return c.consume(name, prefetch)
}

func (c *Conn) consume(name string, prefetch int) (<-chan queue.Delivery, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("queue: consume channel: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("queue: qos: %w", err)
	}
	c.tag = fmt.Sprintf("codebench-%d", time.Now().UnixNano())
	msgs, err := ch.Consume(name, c.tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("queue: consume: %w", err)
	}
	c.cons = ch
	out := make(chan queue.Delivery)
	// Owned by the connection: it ends when msgs closes (cancel or close).
	go func() {
		defer close(out)
		for m := range msgs {
			d := queue.Delivery{Body: m.Body, Redelivered: m.Redelivered, Acker: consAck{c, m.DeliveryTag},
				ReplyTo: m.ReplyTo, CorrelationID: m.CorrelationId, UserID: m.UserId, AppID: m.AppId}
			if ns, ok := m.Headers[queue.PublishedHeader].(int64); ok && ns > 0 {
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
	_, err = ch.QueueDeclare(queue.StatusQueue(id), true, false, false, false, args)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
		return nil // exists with other arguments: still a queue we can publish to
	}
	if err != nil {
		return fmt.Errorf("queue: declare %s: %w", queue.StatusQueue(id), err)
	}
	return nil
}

// StatusQueueExists reports whether job_status_<id> exists, without
// creating it (a passive declare, on a channel of its own: the broker
// closes a channel whose passive declare finds nothing).
func (c *Conn) StatusQueueExists(id string) (bool, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return false, fmt.Errorf("queue: channel: %w", err)
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(queue.StatusQueue(id), true, false, false, false, nil)
	var aerr *amqp.Error
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &aerr) && aerr.Code == amqp.NotFound:
		return false, nil
	}
	return false, fmt.Errorf("queue: passive declare %s: %w", queue.StatusQueue(id), err)
}

// QueueStats is a queue's messages ready and its consumers (a passive
// declare, on a channel of its own).
func (c *Conn) QueueStats(name string) (messages, consumers int, err error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return 0, 0, fmt.Errorf("queue: channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("queue: passive declare %s: %w", name, err)
	}
	return q.Messages, q.Consumers, nil
}

// PublishStatus publishes one status to the job's queue and waits for the
// broker's confirm.
func (c *Conn) PublishStatus(ctx context.Context, id string, body []byte) error {
	return c.publish(ctx, "", queue.StatusQueue(id), body, nil, "")
}

// PublishReply publishes one status to a requester's reply queue (also
// RabbitMQ's direct reply-to, amq.rabbitmq.reply-to.*) with its correlation
// id, and waits for the broker's confirm. A reply queue that is gone makes
// the message unroutable, not an error.
func (c *Conn) PublishReply(ctx context.Context, replyTo, correlationID string, body []byte) error {
	return c.publish(ctx, "", replyTo, body, nil, correlationID)
}

// DeadLetter publishes an undeliverable job to jobs.dead with the reason.
func (c *Conn) DeadLetter(ctx context.Context, body []byte, reason string) error {
	return c.publish(ctx, "", queue.DeadQueue, body, amqp.Table{queue.ReasonHeader: reason}, "")
}

// PublishJob publishes a job the way the configured topology expects.
func (c *Conn) PublishJob(ctx context.Context, body []byte) error {
	h := amqp.Table{queue.PublishedHeader: time.Now().UnixNano()}
	if c.cfg.Topology == queue.TopologyAPI {
		return c.publish(ctx, queue.APIExchange, queue.APIRoutingKey, body, h, "")
	}
	return c.publish(ctx, "", queue.JobsQueue, body, h, "")
}

func (c *Conn) publish(ctx context.Context, exchange, key string, body []byte, headers amqp.Table, correlationID string) error {
	return c.publishTo(ctx, exchange, key, body, headers, correlationID, "")
}

// PublishJobReply publishes a job whose statuses go to replyTo (a queue
// the workers' reply_to policy allows), tagged with correlationID.
func (c *Conn) PublishJobReply(ctx context.Context, body []byte, replyTo, correlationID string) error {
	h := amqp.Table{queue.PublishedHeader: time.Now().UnixNano()}
	if c.cfg.Topology == queue.TopologyAPI {
		return c.publishTo(ctx, queue.APIExchange, queue.APIRoutingKey, body, h, correlationID, replyTo)
	}
	return c.publishTo(ctx, "", queue.JobsQueue, body, h, correlationID, replyTo)
}

func (c *Conn) publishTo(ctx context.Context, exchange, key string, body []byte, headers amqp.Table, correlationID, replyTo string) error {
	if len(body) > c.MaxMessageSize() {
		return fmt.Errorf("%w: %d bytes to %s, the broker's limit is %d", queue.ErrTooLarge, len(body), key, c.MaxMessageSize())
	}
	c.pubMu.Lock()
	ch, err := c.pubChannel()
	if err != nil {
		c.pubMu.Unlock()
		return err
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		Timestamp:     time.Now(),
		Headers:       headers,
		CorrelationId: correlationID,
		ReplyTo:       replyTo,
		UserId:        c.user,
		AppId:         queue.AppID,
		Body:          body,
	})
	c.pubMu.Unlock()
	if err != nil {
		if c.conn.IsClosed() {
			return fmt.Errorf("%w: publish to %s: %w", queue.ErrConnLost, key, err)
		}
		return fmt.Errorf("queue: publish to %s: %w", key, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("queue: confirm of %s: %w", key, err)
	}
	if ok {
		return nil
	}
	if c.conn.IsClosed() {
		return fmt.Errorf("%w: %w: %s", queue.ErrConnLost, queue.ErrNotConfirmed, key)
	}
	// A refused message closes the channel (406 PRECONDITION_FAILED): the
	// next publish opens a new one.
	if e := c.closeReason(ch); e != nil && e.Code == amqp.PreconditionFailed {
		c.learnLimit(e.Reason)
		return fmt.Errorf("%w: %d bytes to %s: %s", queue.ErrTooLarge, len(body), key, e.Reason)
	} else if e != nil {
		return fmt.Errorf("%w: %w: %s: channel closed: %w", queue.ErrRefused, queue.ErrNotConfirmed, key, e)
	}
	return fmt.Errorf("%w: %w: %s (nacked)", queue.ErrRefused, queue.ErrNotConfirmed, key)
}

// Follow consumes a job's status queue (auto-ack), delivering bodies until
// ctx ends. Used by tests.
func (c *Conn) Follow(ctx context.Context, id string) (<-chan []byte, error) {
	msgs, err := c.FollowMessages(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan []byte)
	go func() {
		defer close(out)
		for m := range msgs {
			select {
			case out <- m.Body:
			case <-ctx.Done():
				// Drain: FollowMessages closes msgs once ctx ended.
			}
		}
	}()
	return out, nil
}

// FollowMessages is Follow with each message's publisher (user_id, app_id),
// for "codebench submit --watch".
func (c *Conn) FollowMessages(ctx context.Context, id string) (<-chan queue.Message, error) {
	if err := c.DeclareStatusQueue(id); err != nil {
		return nil, err
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, err
	}
	// Plain Consume: the context variant sends basic.cancel when ctx ends,
	// which races the channel close below into a connection error.
	msgs, err := ch.Consume(queue.StatusQueue(id), "", true, false, false, false, nil)
	if err != nil {
		ch.Close()
		return nil, err
	}
	out := make(chan queue.Message)
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
				case out <- queue.Message{Body: m.Body, UserID: m.UserId, AppID: m.AppId}:
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
