package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
)

// Hand-written fakes for the worker's seams: a broker that records what is
// published (and fails where told), a pool of fake sandboxes, an acker.

var errBroker = errors.New("fake broker: refused")

// fakeBroker is a Session. fail names operations that fail: "declare",
// "exists", "publish:<status>" (e.g. "publish:received", "publish:final"),
// "dead", "reply", as if the connection were lost; "refuse:<operation>"
// (e.g. "refuse:publish:final", "refuse:dead") makes the broker, still
// connected, refuse it (queue.ErrRefused).
type fakeBroker struct {
	mu       sync.Mutex // guards everything below
	fail     map[string]bool
	declared []string
	// existing are status queues that exist without the worker declaring them.
	existing map[string]bool
	statuses map[string][]job.Status // by job id, in order
	bodies   map[string][][]byte
	dead     []deadLetter
	replies  []reply

	// limit is the broker's real message size limit (0: none); known is
	// what MaxMessageSize reports, until a refusal teaches the real one.
	limit, known int
	refused      int
	// overhead is what a message's properties and headers take of limit.
	overhead int

	deliveries chan queue.Delivery
	closed     chan error
	stopped    bool
}

type deadLetter struct {
	body   []byte
	reason string
}

func newFakeBroker(fail ...string) *fakeBroker {
	b := &fakeBroker{fail: map[string]bool{}, existing: map[string]bool{}, statuses: map[string][]job.Status{}, bodies: map[string][][]byte{},
		deliveries: make(chan queue.Delivery), closed: make(chan error, 1)}
	for _, f := range fail {
		b.fail[f] = true
	}
	return b
}

func (b *fakeBroker) DeclareStatusQueue(id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failure("declare"); err != nil {
		return err
	}
	b.declared = append(b.declared, id)
	return nil
}

// failure is the error of operation op, if it fails. b.mu is held.
func (b *fakeBroker) failure(op string) error {
	switch {
	case b.fail["refuse:"+op]:
		return fmt.Errorf("%w: fake broker: %s", queue.ErrRefused, op)
	case b.fail[op]:
		return errBroker
	}
	return nil
}

func (b *fakeBroker) StatusQueueExists(id string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail["exists"] {
		return false, errBroker
	}
	return b.existing[id] || slices.Contains(b.declared, id), nil
}

func (b *fakeBroker) PublishStatus(_ context.Context, id string, body []byte) error {
	var st job.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit > 0 && len(body)+b.overhead > b.limit {
		b.refused++
		b.known = b.limit
		return fmt.Errorf("%w: %d bytes", queue.ErrTooLarge, len(body))
	}
	key := "publish:" + st.Status
	if job.Final(st.Status) {
		key = "publish:final"
	}
	if err := b.failure(key); err != nil {
		return err
	}
	b.statuses[id] = append(b.statuses[id], st)
	b.bodies[id] = append(b.bodies[id], body)
	return nil
}

type reply struct {
	to, correlationID string
	status            job.Status
}

func (b *fakeBroker) PublishReply(_ context.Context, replyTo, correlationID string, body []byte) error {
	var st job.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	key := "reply:" + st.Status
	if job.Final(st.Status) {
		key = "reply:final"
	}
	if err := b.failure("reply"); err != nil {
		return err
	}
	if err := b.failure(key); err != nil {
		return err
	}
	b.replies = append(b.replies, reply{replyTo, correlationID, st})
	return nil
}

func (b *fakeBroker) DeadLetter(_ context.Context, body []byte, reason string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failure("dead"); err != nil {
		return err
	}
	b.dead = append(b.dead, deadLetter{body, reason})
	return nil
}

func (b *fakeBroker) MaxMessageSize() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known > 0 {
		return b.known
	}
	return 128 << 20
}

func (b *fakeBroker) Consume() (<-chan queue.Delivery, error) { return b.deliveries, nil }

func (b *fakeBroker) StopConsuming() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	return nil
}

func (b *fakeBroker) Closed() <-chan error { return b.closed }
func (b *fakeBroker) Close() error         { return nil }

func (b *fakeBroker) statusesOf(id string) []job.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]job.Status(nil), b.statuses[id]...)
}

// fakeAcker records how a delivery was settled.
type fakeAcker struct {
	mu      sync.Mutex // guards acks, nacks, rejects
	acks    int
	nacks   []bool // requeue flags
	rejects []bool // requeue flags
	settled chan struct{}
}

func (a *fakeAcker) Reject(requeue bool) error {
	a.mu.Lock()
	a.rejects = append(a.rejects, requeue)
	a.mu.Unlock()
	a.settled <- struct{}{}
	return nil
}

func newFakeAcker() *fakeAcker { return &fakeAcker{settled: make(chan struct{}, 16)} }

func (a *fakeAcker) Ack() error {
	a.mu.Lock()
	a.acks++
	a.mu.Unlock()
	a.settled <- struct{}{}
	return nil
}

func (a *fakeAcker) Nack(requeue bool) error {
	a.mu.Lock()
	a.nacks = append(a.nacks, requeue)
	a.mu.Unlock()
	a.settled <- struct{}{}
	return nil
}

// fakeSandbox answers every run with res or err.
type fakeSandbox struct {
	res *agentproto.RunResult
	err error
	// stream is output the fake streams before it answers.
	stream []string
	// block, when set, makes Run wait for it or ctx.
	block chan struct{}
	// stopBlock, when set, makes Stop wait for it (a slow teardown).
	stopBlock chan struct{}

	mu      sync.Mutex // guards stopped, runs
	stopped int
	runs    int
}

func (s *fakeSandbox) ID() string { return "fake-vm" }

func (s *fakeSandbox) Run(ctx context.Context, _ *agentproto.RunRequest, progress func(agentproto.Output)) (*agentproto.RunResult, error) {
	for i, chunk := range s.stream {
		if progress != nil {
			progress(agentproto.Output{Seq: i + 1, Stdout: chunk})
		}
	}
	s.mu.Lock()
	s.runs++
	s.mu.Unlock()
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.res, s.err
}

func (s *fakeSandbox) ConsoleTail(int) string { return "fake console" }

func (s *fakeSandbox) Stop(context.Context) error {
	s.mu.Lock()
	s.stopped++
	s.mu.Unlock()
	if s.stopBlock != nil {
		<-s.stopBlock
	}
	return nil
}

// fakePool hands out sb, or fails with err; with wait it blocks until ctx.
type fakePool struct {
	sb   *fakeSandbox
	err  error
	wait bool
}

func (p *fakePool) Take(ctx context.Context) (Sandbox, error) {
	if p.wait {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if p.err != nil {
		return nil, p.err
	}
	return p.sb, nil
}

func okResult(stdout string) *agentproto.RunResult {
	return &agentproto.RunResult{Compiled: true, Compile: &agentproto.Phase{WallUS: 900}, Run: &agentproto.Phase{WallUS: 100}, Stdout: stdout, AgentUS: 1100}
}

func testPolicy() job.Policy {
	return job.Policy{
		MaxCodeBytes: 4096, Languages: []string{"c", "python"},
		Defaults:    job.Limits{WallMS: 1000, CPUMS: 1000, MemoryKB: 65536, Processes: 16, OutputBytes: 1024, FileSizeKB: 1024},
		Max:         job.Limits{WallMS: 2000, CPUMS: 2000, MemoryKB: 131072, Processes: 32, OutputBytes: 4096, FileSizeKB: 2048},
		CompileWall: 1000,
	}
}

func quietLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func statusNames(sts []job.Status) string {
	var n []string
	for _, s := range sts {
		n = append(n, s.Status)
	}
	return strings.Join(n, ",")
}
