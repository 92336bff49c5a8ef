// Package agentclient is the host side of the agent protocol. Everything it
// reads from the guest is bounded in time (the caller's ctx) and in size by
// what was asked: a frame may be as large as the answer to a request in
// flight can be (agentproto.ResponseBound), no larger; frames nobody waits
// for are dropped while they are small and end the connection when they are
// not, or when there are too many; an answer is checked against its request
// (runs, output sizes). The guest is untrusted once user code has run.
package agentclient

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/untrusted"
)

// Errors callers match with errors.Is.
var (
	ErrClosed       = errors.New("agent: connection closed")
	ErrProtocol     = errors.New("agent: protocol violation")
	ErrNotReady     = errors.New("agent: did not answer the handshake")
	ErrVersion      = errors.New("agent: protocol version mismatch")
	ErrAgentRefused = errors.New("agent: request refused")
	// ErrRequestTooLarge: the request is over the agent's frame limit; it
	// was not sent.
	ErrRequestTooLarge = errors.New("agent: request too large")
)

// Client is one connection to an agent. Requests may be issued from several
// goroutines; each waits for the response carrying its own id.
type Client struct {
	conn net.Conn

	mu      sync.Mutex // guards nextID, waiters, err
	nextID  uint64
	waiters map[uint64]*waiter
	err     error // set once the reader stopped

	writeMu sync.Mutex // serialises frames on conn
	done    chan struct{}
}

// Dial connects to the agent's channel.
type Dial func(ctx context.Context) (net.Conn, error)

// Options tune Connect.
type Options struct {
	// HelloEvery is how often an unanswered hello is repeated: the guest
	// drops what arrives before it opens its port.
	HelloEvery time.Duration
	// Redial is how long one connection may go unanswered before it is
	// replaced (a fresh connection also resynchronises the stream).
	Redial time.Duration
}

// Connect dials and handshakes, retrying until ctx is done.
func Connect(ctx context.Context, dial Dial, opts Options) (*Client, *agentproto.HelloInfo, error) {
	if opts.HelloEvery == 0 {
		opts.HelloEvery = 50 * time.Millisecond
	}
	if opts.Redial == 0 {
		opts.Redial = 3 * time.Second
	}
	var lastErr error
	for {
		conn, err := dial(ctx)
		if err == nil {
			c := newClient(conn)
			hello, err := c.handshake(ctx, opts)
			if err == nil {
				return c, hello, nil
			}
			c.Close()
			if errors.Is(err, ErrVersion) {
				return nil, nil, err
			}
			lastErr = err
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: %w (last error: %v)", ErrNotReady, ctx.Err(), lastErr)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waiter is a request awaiting its response.
type waiter struct {
	op     string
	limit  uint32 // the largest frame its answer may take
	values int    // the most JSON values a frame of its may hold
	ch     chan *agentproto.Response
	// out gets the output streamed during a run that asked for it (nil
	// otherwise); streamed counts its bytes against streamLimit.
	out         chan *agentproto.Output
	streamed    int64
	streamLimit int64
	// frames counts its output frames, empty or not, against maxFrames.
	frames, maxFrames int
}

// streamBuffer is how many output frames wait for the caller before more
// are dropped (the final answer carries all the output anyway).
const streamBuffer = 256

// Bounds on what nobody asked for.
const (
	// unsolicitedLimit is the largest frame read while no request is in
	// flight (a late answer to a retried hello, a ping).
	unsolicitedLimit = 64 << 10
	// maxUnsolicited is how many frames that answer nothing a connection
	// may carry before it counts as hostile.
	maxUnsolicited = 1000
)

func newClient(conn net.Conn) *Client {
	// IDs start at a random point: the virtio-serial port is one byte stream
	// across host connections, so the guest's late answer to a request of
	// an abandoned connection can arrive on the next one, and must not match
	// a request there.
	var b [8]byte
	_, _ = rand.Read(b[:])
	c := &Client{conn: conn, nextID: binary.BigEndian.Uint64(b[:]) >> 2, waiters: map[uint64]*waiter{}, done: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *Client) handshake(ctx context.Context, opts Options) (*agentproto.HelloInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, opts.Redial)
	defer cancel()
	tick := time.NewTicker(opts.HelloEvery)
	defer tick.Stop()
	answers := make(chan *agentproto.Response, 1)
	for {
		id, ch, err := c.send(&agentproto.Request{Op: agentproto.OpHello, Version: agentproto.Version})
		if err != nil {
			return nil, err
		}
		go func() { // forwards whichever hello is answered first
			select {
			case r, ok := <-ch:
				if ok {
					select {
					case answers <- r:
					default:
					}
				}
			case <-ctx.Done():
			}
			c.forget(id)
		}()
		select {
		case r := <-answers:
			if r.Error != nil {
				if r.Error.Code == agentproto.CodeVersionMismatch {
					return nil, fmt.Errorf("%w: %s", ErrVersion, r.Error.Message)
				}
				return nil, fmt.Errorf("%w: %v", ErrAgentRefused, r.Error)
			}
			if r.Hello == nil {
				return nil, fmt.Errorf("%w: hello answered without info", ErrProtocol)
			}
			return r.Hello, nil
		case <-c.done:
			return nil, c.readErr()
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Client) readLoop() {
	defer close(c.done)
	unsolicited := 0
	for {
		n, err := agentproto.ReadHeader(c.conn)
		if err != nil {
			if errors.Is(err, agentproto.ErrEmptyFrame) {
				err = fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			c.fail(err)
			return
		}
		// The size is checked before anything is allocated: no answer in
		// flight can be larger than its bound.
		if limit := c.frameLimit(); n > limit {
			c.fail(fmt.Errorf("%w: %w", ErrProtocol, &agentproto.FrameTooLargeError{Size: n, Limit: limit}))
			return
		}
		b, err := agentproto.ReadPayload(c.conn, n)
		if err != nil {
			c.fail(err)
			return
		}
		// Counted before decoded: what a frame may allocate is bounded by
		// its values, not only by its size.
		if v, limit := untrusted.JSONValues(b), c.valueLimit(); v > limit {
			c.fail(fmt.Errorf("%w: %w", ErrProtocol, untrusted.TooManyJSONValues("a frame", v, limit)))
			return
		}
		r, err := decodeResponse(b)
		if err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrProtocol, err))
			return
		}
		if r.ID == 0 && r.Error != nil {
			// The agent could not even read a request (too large, not
			// JSON): it cannot say which, so every call in flight ends.
			c.answerAll(r)
			continue
		}
		if r.Op == agentproto.OpOutput {
			switch err := c.stream(r); {
			case err != nil:
				c.fail(err)
				return
			case r.Output != nil:
				continue
			}
			// Output for no run that asked for it: unsolicited, below.
		}
		c.mu.Lock()
		w, ok := c.waiters[r.ID]
		if ok && w.op == r.Op {
			delete(c.waiters, r.ID)
		}
		c.mu.Unlock()
		if ok && w.op == r.Op {
			w.ch <- r // buffered, one response per id
			continue
		}
		// A response nobody waits for, or for another op, answers a retried
		// hello or an abandoned connection's request: dropped, up to a point.
		if unsolicited++; unsolicited > maxUnsolicited {
			c.fail(fmt.Errorf("%w: more than %d frames that answer no request", ErrProtocol, maxUnsolicited))
			return
		}
	}
}

// stream hands a streamed output frame to its run, bounded: a run receives
// at most what its output limits allow. It leaves r.Output nil when no run
// in flight asked for this output.
func (c *Client) stream(r *agentproto.Response) error {
	o := r.Output
	r.Output = nil
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.waiters[r.ID]
	if !ok || w.out == nil || o == nil {
		return nil
	}
	if w.frames++; w.frames > w.maxFrames {
		return fmt.Errorf("%w: more than %d output frames for one run", ErrProtocol, w.maxFrames)
	}
	w.streamed += int64(len(o.Stdout) + len(o.Stderr))
	if w.streamed > w.streamLimit {
		return fmt.Errorf("%w: %d bytes of output streamed, at most %d can be", ErrProtocol, w.streamed, w.streamLimit)
	}
	select {
	case w.out <- o:
	default: // the caller is behind: drop, the answer has it all
	}
	r.Output = o
	return nil
}

// frameLimit is the largest frame the reader accepts now: the largest bound
// of the requests in flight, or unsolicitedLimit.
func (c *Client) frameLimit() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := uint32(unsolicitedLimit)
	for _, w := range c.waiters {
		limit = max(limit, w.limit)
	}
	return limit
}

// valueLimit is the most JSON values a frame may hold now: the largest
// bound of the requests in flight, or an envelope's.
func (c *Client) valueLimit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := agentproto.ResponseValues(&agentproto.Request{})
	for _, w := range c.waiters {
		limit = max(limit, w.values)
	}
	return limit
}

// rawResponse is a frame with its members undecoded, so that a member its
// op does not have is refused before it is decoded.
type rawResponse struct {
	ID     uint64            `json:"id"`
	Op     string            `json:"op"`
	Error  *agentproto.Error `json:"error,omitempty"`
	Hello  json.RawMessage   `json:"hello,omitempty"`
	Run    json.RawMessage   `json:"run,omitempty"`
	Output json.RawMessage   `json:"output,omitempty"`
}

// decodeResponse decodes a frame, refusing members its op does not carry:
// hello only in a hello's answer, run only in a run's, output only in an
// output frame.
func decodeResponse(b []byte) (*agentproto.Response, error) {
	var raw rawResponse
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	has := func(m json.RawMessage) bool { return len(m) > 0 && string(m) != "null" }
	allowed := map[string]bool{}
	switch raw.Op {
	case agentproto.OpHello:
		allowed["hello"] = true
	case agentproto.OpRun:
		allowed["run"] = true
	case agentproto.OpOutput:
		allowed["output"] = true
	}
	r := &agentproto.Response{ID: raw.ID, Op: raw.Op, Error: raw.Error}
	for _, m := range []struct {
		name string
		raw  json.RawMessage
		into any
	}{
		{"hello", raw.Hello, &r.Hello},
		{"run", raw.Run, &r.Run},
		{"output", raw.Output, &r.Output},
	} {
		if !has(m.raw) {
			continue
		}
		if !allowed[m.name] {
			return nil, fmt.Errorf("a %s frame carries %s", untrusted.Quote(raw.Op), m.name)
		}
		if err := json.Unmarshal(m.raw, m.into); err != nil {
			return nil, fmt.Errorf("decode %s: %w", m.name, err)
		}
	}
	return r, nil
}

// answerAll gives r to every request in flight.
func (c *Client) answerAll(r *agentproto.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, w := range c.waiters {
		w.ch <- r
		delete(c.waiters, id)
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for id, w := range c.waiters {
		close(w.ch)
		delete(c.waiters, id)
	}
	_ = c.conn.Close()
}

func (c *Client) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, c.err)
}

func (c *Client) send(req *agentproto.Request) (uint64, chan *agentproto.Response, error) {
	id, w, err := c.sendStream(req, false)
	if err != nil {
		return 0, nil, err
	}
	return id, w.ch, nil
}

// sendStream sends req; with stream, its waiter also receives streamed
// output.
func (c *Client) sendStream(req *agentproto.Request, stream bool) (uint64, *waiter, error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return 0, nil, c.readErr()
	}
	c.nextID++
	req.ID = c.nextID
	w := &waiter{op: req.Op, limit: agentproto.ResponseBound(req), values: agentproto.ResponseValues(req), ch: make(chan *agentproto.Response, 1)}
	if stream && req.Run != nil {
		w.out = make(chan *agentproto.Output, streamBuffer)
		w.streamLimit = agentproto.StreamBound(req.Run)
		w.maxFrames = agentproto.StreamFrames(req.Run)
	}
	c.waiters[req.ID] = w
	c.mu.Unlock()

	b, err := agentproto.Marshal(req)
	if err == nil && len(b) > agentproto.MaxRequestFrame {
		err = fmt.Errorf("%w: %d bytes, the agent reads at most %d", ErrRequestTooLarge, len(b), agentproto.MaxRequestFrame)
	}
	if err == nil {
		c.writeMu.Lock()
		_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err = agentproto.WriteFrame(c.conn, b)
		c.writeMu.Unlock()
	}
	if err != nil {
		c.forget(req.ID)
		return 0, nil, fmt.Errorf("agent: send %s: %w", req.Op, err)
	}
	return req.ID, w, nil
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.waiters, id)
	c.mu.Unlock()
}

// call sends req and waits for its answer or ctx.
func (c *Client) call(ctx context.Context, req *agentproto.Request) (*agentproto.Response, error) {
	return c.callStreaming(ctx, req, nil)
}

// callStreaming is call for a run that streams its output to progress
// (nil: the request streams nothing, and its waiter has no output channel,
// which a select never receives from).
func (c *Client) callStreaming(ctx context.Context, req *agentproto.Request, progress func(agentproto.Output)) (*agentproto.Response, error) {
	id, w, err := c.sendStream(req, progress != nil)
	if err != nil {
		return nil, err
	}
	defer c.forget(id)
	drain := func() {
		for {
			select {
			case o := <-w.out:
				progress(*o)
			default:
				return
			}
		}
	}
	for {
		select {
		case o := <-w.out:
			progress(*o)
		case r, ok := <-w.ch:
			drain() // frames read before the answer come first
			if !ok {
				return nil, c.readErr()
			}
			if r.Error != nil {
				return nil, fmt.Errorf("%w: %w", ErrAgentRefused, r.Error)
			}
			return r, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("agent: %s: %w", req.Op, ctx.Err())
		}
	}
}

// Ping checks the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.call(ctx, &agentproto.Request{Op: agentproto.OpPing})
	return err
}

// Run runs one program. progress, when not nil and the request streams,
// gets the output the agent streams while it runs, in order, before Run
// returns.
func (c *Client) Run(ctx context.Context, req *agentproto.RunRequest, progress func(agentproto.Output)) (*agentproto.RunResult, error) {
	if !req.Stream {
		progress = nil
	}
	r, err := c.callStreaming(ctx, &agentproto.Request{Op: agentproto.OpRun, Run: req}, progress)
	if err != nil {
		return nil, err
	}
	if r.Run == nil {
		return nil, fmt.Errorf("%w: run answered without a result", ErrProtocol)
	}
	if err := agentproto.CheckResult(req, r.Run); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return r.Run, nil
}

// Err is nil while the connection is up, and why it is not otherwise. It
// costs no round trip.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.readErr()
	default:
		return nil
	}
}

// Close closes the connection and waits for the reader to stop.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	<-c.done
	return nil
}

// Reset empties the guest's job and temp directories.
func (c *Client) Reset(ctx context.Context) error {
	_, err := c.call(ctx, &agentproto.Request{Op: agentproto.OpReset})
	return err
}

// SetIdentity reseeds the guest RNG and sets its clock.
func (c *Client) SetIdentity(ctx context.Context, id *agentproto.Identity) error {
	_, err := c.call(ctx, &agentproto.Request{Op: agentproto.OpIdentity, Identity: id})
	return err
}

// Envd makes the sandbox a long-lived one (agentproto.OpEnvd) and closes
// the client: from the answer on, the agent channel carries the sandbox's
// link (internal/sandboxlink), which the caller dials on a new session.
func (c *Client) Envd(ctx context.Context, req *agentproto.Envd) error {
	_, err := c.call(ctx, &agentproto.Request{Op: agentproto.OpEnvd, Envd: req})
	return errors.Join(err, c.Close())
}
